"""Shared fixtures: a tiny corpus the project generates itself, a word model trained on it
in seconds through the real training CLI, and app clients over a models directory."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS = REPOSITORY_ROOT / "weights"

SUBJECTS = ["the cat", "the dog", "a bird", "my friend", "the old man", "a small child"]
VERBS = ["sat on", "looked at", "ran to", "walked past", "slept near"]
OBJECTS = ["the mat", "the door", "a tree", "the house", "the river", "a red car"]


def tiny_sentences(count: int, seed: int) -> list[str]:
    """Short English sentences from a small grammar (deterministic for a seed)."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ." for _ in range(count)]


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-corpus")
    for split, count, seed in (("train", 3000, 1), ("valid", 300, 2), ("test", 300, 3)):
        (directory / f"{split}.txt").write_text("\n".join(tiny_sentences(count, seed)) + "\n")
    return directory


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory, tiny_corpus) -> Path:
    """A models directory holding `tiny-word-lstm`, trained by `training.train_lm`."""
    from training.train_lm import main as train

    models_dir = tmp_path_factory.mktemp("models")
    run_dir = tmp_path_factory.mktemp("run")
    train([
        "--data", str(tiny_corpus), "--level", "word", "--embedding-dim", "32", "--hidden-dim", "48",
        "--num-layers", "1", "--dropout", "0", "--batch-size", "16", "--bptt", "20", "--lr", "1e-2",
        "--epochs", "2", "--tie-weights", "--run-dir", str(run_dir), "--export-dir", str(models_dir / "tiny-word-lstm"),
        "--no-progress", "--seed", "7",
    ])
    return models_dir


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    from tests.training.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), train=360)


@pytest.fixture(scope="session")
def shapes_captioner(tmp_path_factory, shapes_dir) -> tuple[Path, Path]:
    """(export directory, run directory) of a tiny captioner trained on the shapes by
    `training.train_captioner` (small CNN trained from scratch with the decoder)."""
    from training.train_captioner import main as train

    run_dir = tmp_path_factory.mktemp("captioner-run")
    export = tmp_path_factory.mktemp("captioner-models") / "shapes-captioner"
    train(["--data", str(shapes_dir), "--encoder", "small_cnn", "--image-size", "48", "--embedding-dim", "32",
           "--hidden-dim", "64", "--attention-dim", "32", "--dropout", "0.1", "--min-count", "1", "--batch-size", "32",
           "--lr", "5e-3", "--epochs", "5", "--patience", "5", "--run-dir", str(run_dir), "--export-dir", str(export),
           "--no-progress", "--seed", "3"])
    return export, run_dir


@pytest.fixture(scope="session")
def all_models_dir(tmp_path_factory, tiny_models_dir, shapes_captioner) -> Path:
    """A models directory with the tiny language model and the shapes captioner."""
    directory = tmp_path_factory.mktemp("all-models")
    shutil.copytree(tiny_models_dir / "tiny-word-lstm", directory / "tiny-word-lstm")
    shutil.copytree(shapes_captioner[0], directory / "shapes-captioner")
    return directory


@pytest.fixture(scope="session")
def tiny_ngram_path(tmp_path_factory, tiny_corpus) -> Path:
    """`tiny-kn3`: a trigram Kneser-Ney model of the tiny corpus, by `training.train_ngram`."""
    from training.train_ngram import main as train

    output = tmp_path_factory.mktemp("ngram") / "tiny-kn3"
    train(["--data", str(tiny_corpus), "--order", "3", "--style", "plain", "--output", str(output)])
    return output


@pytest.fixture(scope="session")
def tiny_model_path(tiny_models_dir) -> Path:
    return tiny_models_dir / "tiny-word-lstm"


@pytest.fixture()
def copy_of_models(tmp_path, tiny_models_dir) -> Path:
    destination = tmp_path / "models"
    shutil.copytree(tiny_models_dir, destination)
    return destination


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A real redis-server on a free loopback port that a test can stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        import redis

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server; .ci/run does it)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture()
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
