"""MkDocs hook: the benchmark pages show the plots the benchmarks write into bench/results/.

The pages link them as `../../bench/results/NAME.png`, a path that also works when the Markdown
is read in the repository. The site is built from docs/ only, so the plots are published under
`benchmarks/results/` and the benchmark pages' links are pointed there. One copy of each plot
exists: the one a benchmark run replaces."""
from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
REPOSITORY_PREFIX = "../../bench/results/"
SITE_FOLDER = "benchmarks/results/"


def on_files(files, config):
    for plot in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, SITE_FOLDER + plot.name, abs_src_path=str(plot)))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith("benchmarks/"):
        return markdown.replace(REPOSITORY_PREFIX, "results/")
    return markdown
