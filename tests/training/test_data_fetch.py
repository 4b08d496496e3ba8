"""training.data: datasets fetched for real, over HTTP from a local server that serves small files
made here, or copied from a local mirror; every file checked, nothing half-written left behind."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest

from training import data
from training.data import Dataset, Download, FetchError, Unpack, fetch, problems_with, tree_digest

TRAIN_TEXT = b"the cat sat on the mat\nthe dog sat on the log\n"
TABLE_TEXT = b"mr.\ndr.\n"
README_TEXT = b"tables of a tiny sentence splitter\n"


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def make_archive() -> bytes:
    """A zip as the canonical ones are laid out: a top folder, and macOS resource forks beside it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("pack/english/abbrev.txt", TABLE_TEXT)
        archive.writestr("pack/README", README_TEXT)
        archive.writestr("__MACOSX/pack/english/._abbrev.txt", b"\x00\x05\x16\x07")
    return buffer.getvalue()


ARCHIVE = make_archive()


class FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.files = {"/tiny/train.txt": TRAIN_TEXT, "/tiny/pack.zip": ARCHIVE}
        self.truncated: set[str] = set()  # paths whose body stops halfway, the connection closed
        self.requests: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class FileHandler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.server.truncated:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    file_server = FileServer()
    thread = threading.Thread(target=file_server.serve_forever, daemon=True)
    thread.start()
    yield file_server
    file_server.shutdown()
    file_server.server_close()


def tiny_dataset(base_url: str, *, train_sha256: str = sha256(TRAIN_TEXT), table_sha256: str = sha256(TABLE_TEXT),
                 images_digest: str = "") -> dict[str, Dataset]:
    dataset = Dataset(
        name="tiny",
        directory="corpora/tiny",  # nested, as nltk_data/tokenizers/punkt_tab is
        downloads=(
            Download(f"{base_url}/tiny/train.txt", sha256=train_sha256, path="train.txt"),
            Download(f"{base_url}/tiny/pack.zip", md5=hashlib.md5(ARCHIVE).hexdigest(),
                     unpack=(Unpack("pack/", "tables/"),)),
        ),
        checksums={"train.txt": train_sha256, "tables/english/abbrev.txt": table_sha256},
        required=("tables/README",),
        mirror_checksums={"tables/README": sha256(README_TEXT)},
        mirror_trees={"images": images_digest} if images_digest else {},
    )
    return {"tiny": dataset}


def everything_under(directory: Path) -> list[str]:
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*"))


def test_a_download_is_verified_unpacked_and_renamed_into_place(server, tmp_path):
    data_dir = tmp_path / "data"
    target = fetch("tiny", data_dir, datasets=tiny_dataset(server.url))
    assert target == data_dir / "corpora" / "tiny"
    assert (target / "train.txt").read_bytes() == TRAIN_TEXT
    assert (target / "tables" / "english" / "abbrev.txt").read_bytes() == TABLE_TEXT
    assert (target / "tables" / "README").read_bytes() == README_TEXT
    # No staging directory, partial file, kept archive or resource fork.
    assert everything_under(data_dir) == ["corpora", "corpora/tiny", "corpora/tiny/tables",
                                          "corpora/tiny/tables/README", "corpora/tiny/tables/english",
                                          "corpora/tiny/tables/english/abbrev.txt", "corpora/tiny/train.txt"]
    assert server.requests == ["/tiny/train.txt", "/tiny/pack.zip"]
    # A verified copy is kept as it is: nothing is downloaded again.
    assert fetch("tiny", data_dir, datasets=tiny_dataset(server.url), progress=False) == target
    assert len(server.requests) == 2


def test_a_checksum_mismatch_is_an_error_that_leaves_nothing(server, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "other.txt").write_text("a file of the user's")
    with pytest.raises(FetchError, match=f"SHA-256 {sha256(TRAIN_TEXT)}, expected {'0' * 64}"):
        fetch("tiny", data_dir, datasets=tiny_dataset(server.url, train_sha256="0" * 64), progress=False)
    assert everything_under(data_dir) == ["other.txt"]
    # A file inside a verified archive is checked too.
    with pytest.raises(FetchError, match="tables/english/abbrev.txt has SHA-256"):
        fetch("tiny", data_dir, datasets=tiny_dataset(server.url, table_sha256="1" * 64), progress=False)
    assert everything_under(data_dir) == ["other.txt"]


def test_an_interrupted_download_is_an_error_that_leaves_nothing(server, tmp_path):
    server.truncated.add("/tiny/pack.zip")  # the second download, after train.txt arrived whole
    data_dir = tmp_path / "data"
    with pytest.raises(FetchError, match=f"interrupted after {len(ARCHIVE) // 2} "):
        fetch("tiny", data_dir, datasets=tiny_dataset(server.url), progress=False)
    assert not data_dir.exists()
    server.files.pop("/tiny/train.txt")
    with pytest.raises(FetchError, match="404"):
        fetch("tiny", data_dir, datasets=tiny_dataset(server.url), progress=False)
    assert not data_dir.exists()


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A local copy in the data layout, with a directory of images recorded by one tree digest."""
    root = tmp_path / "mirror"
    copy = root / "corpora" / "tiny"
    (copy / "tables" / "english").mkdir(parents=True)
    (copy / "train.txt").write_bytes(TRAIN_TEXT)
    (copy / "tables" / "english" / "abbrev.txt").write_bytes(TABLE_TEXT)
    (copy / "tables" / "README").write_bytes(README_TEXT)
    (copy / "images" / "more").mkdir(parents=True)
    (copy / "images" / "a.jpg").write_bytes(b"first image")
    (copy / "images" / "more" / "b.jpg").write_bytes(b"second image")
    return root


def test_a_local_mirror_is_checked_and_copied_without_the_network(server, mirror, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    # The digest `sha256sum` gives for the images, sorted by path.
    listing = f"{sha256(b'first image')}  a.jpg\n{sha256(b'second image')}  more/b.jpg\n"
    images_digest = sha256(listing.encode())
    assert tree_digest(mirror / "corpora" / "tiny" / "images") == images_digest
    datasets = tiny_dataset(server.url, images_digest=images_digest)
    data_dir = tmp_path / "data"
    target = fetch("tiny", data_dir, mirror=mirror, datasets=datasets, progress=False)
    assert (target / "train.txt").read_bytes() == TRAIN_TEXT
    assert (target / "images" / "more" / "b.jpg").read_bytes() == b"second image"
    assert problems_with(datasets["tiny"], target) == []
    assert server.requests == []
    # A mirror whose copy does not match is an error, not a download.
    (mirror / "corpora" / "tiny" / "images" / "a.jpg").write_bytes(b"another image")
    with pytest.raises(FetchError, match="tree digest"):
        fetch("tiny", tmp_path / "elsewhere", mirror=mirror, datasets=datasets, progress=False)
    assert not (tmp_path / "elsewhere").exists()
    # Offline with no local copy: an error, and still no network.
    with pytest.raises(FetchError, match="--offline"):
        fetch("tiny", tmp_path / "elsewhere", mirror=tmp_path / "empty", datasets=datasets, offline=True)
    assert server.requests == []


def test_the_cli_fetches_from_a_base_url(server, tmp_path, monkeypatch, capsys):
    # The canonical URLs cannot be reached; --base-url serves every file as BASE/NAME/FILE.
    monkeypatch.setattr(data, "DATASETS", tiny_dataset("https://canonical.invalid/elsewhere"))
    data_dir = tmp_path / "data"
    options = ["--data-dir", str(data_dir), "--base-url", server.url, "--no-mirror", "--no-progress"]
    result = data.main(["fetch", "all", *options])
    assert result == {"tiny": str(data_dir / "corpora" / "tiny")}
    assert server.requests == ["/tiny/train.txt", "/tiny/pack.zip"]
    assert f"tiny: {data_dir / 'corpora' / 'tiny'}" in capsys.readouterr().out
    assert data.main(["list", "--data-dir", str(data_dir)]) == {"tiny": "verified"}
    # A failure is reported in one line, with a non-zero status.
    (data_dir / "corpora" / "tiny" / "train.txt").write_bytes(b"edited")
    with pytest.raises(SystemExit) as exit:
        data.main(["fetch", "tiny", *options])
    assert exit.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: tiny: ") and "train.txt has SHA-256" in error and "--force" in error
    data.main(["fetch", "tiny", *options, "--force"])
    assert (data_dir / "corpora" / "tiny" / "train.txt").read_bytes() == TRAIN_TEXT
    assert everything_under(data_dir).count("corpora/tiny/train.txt") == 1


@pytest.mark.skipif(not data.SHARED_DATA_DIR.is_dir(), reason="no shared data beside the checkout")
def test_the_recorded_checksums_match_the_shared_copy():
    """The layout under data/ is the shared copy's, and every recorded checksum is its files'."""
    for name, dataset in data.DATASETS.items():
        copy = data.SHARED_DATA_DIR / dataset.directory
        assert problems_with(dataset, copy) == [], name
        for relative, digest in dataset.mirror_checksums.items():
            assert data.file_sha256(copy / relative) == digest, f"{name}: {relative}"
        for relative, digest in dataset.mirror_trees.items():
            assert tree_digest(copy / relative) == digest, f"{name}: {relative}"
