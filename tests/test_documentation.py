"""The documentation a stranger reads: a short README whose links resolve, a MkDocs site that
builds with --strict (every internal link and anchor resolves), and no lab-notebook wording —
history, rounds, goals met or not — in the docs or in the code's comments and docstrings, which
say what the code does and why."""
from __future__ import annotations

import ast
import importlib.util
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 300
CODE_DIRECTORIES = ("app", "models", "training", "bench")

# Wording that tells the story of how the project was made instead of what it is.
LAB_NOTEBOOK = [re.compile(pattern, re.IGNORECASE) for pattern in (
    r"\bthis round\b",
    r"\b(an )?earlier round\b",
    r"\brun [1-4]\b",
    r"until this round",
    r"the issue's",
    r"\bthe issue\b",
    r"is not met",
    r"first version of the tree",
    r"the seed's comparison",
    r"no GPU was lent",
    r"no GPU has been available",
    r"\bused to\b",
    r"\bwas quadratic\b",
    r"9 of 12 levels",
)]


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def python_files() -> list[Path]:
    files = [path for directory in CODE_DIRECTORIES for path in sorted((ROOT / directory).rglob("*.py"))]
    return files + sorted((ROOT / "docs").rglob("*.py"))


def comment_and_docstring_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every comment and docstring line of a Python file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found: list[tuple[int, str]] = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found.append((token.start[0], token.string))
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found += [(number, lines[number - 1]) for number in range(first.lineno, first.end_lineno + 1)]
    return found


def lab_notebook_hits(numbered_lines, path: Path) -> list[str]:
    relative = path.relative_to(ROOT)
    return [f"{relative}:{number}: {text.strip()[:120]}" for number, text in numbered_lines
            for pattern in LAB_NOTEBOOK if pattern.search(text)]


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, (f"README.md has {lines} lines (at most {README_MAX_LINES}): move the detail into "
                                       "a page of docs/ and link it")


def test_every_relative_link_in_the_readme_points_to_a_file():
    text = README.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks hold commands, not links
    broken = []
    for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue  # a URL or an anchor of the README itself
        path = target.split("#", 1)[0]
        if not (ROOT / path).exists():
            broken.append(target)
    assert not broken, f"README.md links to files that do not exist: {broken}"


def test_the_docs_site_builds_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        pytest.skip("mkdocs-material is not installed (it comes with the dev extra: make install-dev)")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert (tmp_path / "site" / "index.html").exists()


def test_no_lab_notebook_wording_in_the_docs():
    hits = []
    for path in markdown_files():
        lines = enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        hits += lab_notebook_hits(lines, path)
    assert not hits, ("docs say what the project does and what was measured, not its history; reword:\n"
                      + "\n".join(hits))


def test_no_lab_notebook_wording_in_code_comments_and_docstrings():
    hits = []
    for path in python_files():
        hits += lab_notebook_hits(comment_and_docstring_lines(path), path)
    assert not hits, ("comments say why the code is as it is, never what it used to be (numbers belong in "
                      "docs/benchmarks); reword:\n" + "\n".join(hits))
