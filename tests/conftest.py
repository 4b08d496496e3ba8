"""Shared fixtures: a tiny corpus the project generates itself, a word model trained on it
in seconds through the real training CLI, and app clients over a models directory.

Tiers: every test is marked with its directory (unit, engine, api, training, e2e). Everything
outside tests/unit, tests/engine and tests/api is also `slow` (real servers, browsers, soak,
training through the CLIs, benchmarks, the documentation build), and so are the few tests of
those tiers listed in SLOW_IN_FAST_TIERS.
`make test-fast` runs `pytest -m "not slow" --hypothesis-profile=fast`; `make test` runs
everything, each property test with its own number of examples."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODELS = REPOSITORY_ROOT / "weights"
TESTS_DIR = Path(__file__).resolve().parent
# The tiers (directories under tests/), each a marker of its tests. Only the fast tiers run in
# `make test-fast`; the others, and test files directly under tests/ (the documentation
# build), are `slow`.
TIERS = ("unit", "engine", "api", "training", "e2e")
FAST_TIERS = ("unit", "engine", "api")
# The tests of the fast tiers that took the largest shares of `make test-fast` (--durations):
# a module or a test, each of its parametrizations included. Marked here so that the test
# files stay as their owners keep them; `make test` runs them all the same.
SLOW_IN_FAST_TIERS = (
    "tests/api/test_caption.py",  # its fixture trains the shapes captioner through the CLI
    "tests/engine/test_pool.py::test_crash_looping_worker_is_restarted_with_backoff",
    "tests/unit/test_generation.py::test_tracked_text_equals_detokenizing_the_whole_completion_every_time",
    "tests/api/test_openapi_contract.py::test_no_string_or_number_makes_the_server_fail",
    "tests/api/test_shipped_models.py::test_the_playground_defaults_always_generate_something",
    "tests/api/test_serving.py::test_killed_worker_fails_its_requests_with_503_then_recovers",
    "tests/api/test_serving.py::test_queue_full_answers_429_with_retry_after",
)


# The Hypothesis profile of `make test-fast`: each property test tries at most this many
# examples (`examples`), where `make test` tries the number the test names.
FAST_PROFILE = "fast"
hypothesis_settings.register_profile(FAST_PROFILE, max_examples=20)


def examples(count: int) -> int:
    """A property test's `max_examples`: `count`, or fewer under the `fast` profile (a test's
    own `max_examples` would otherwise override any profile's)."""
    if hypothesis_settings.get_current_profile_name().startswith(FAST_PROFILE):
        return min(count, hypothesis_settings.default.max_examples)
    return count


def is_listed_slow(nodeid: str) -> bool:
    test = nodeid.split("[", 1)[0]
    return any(test == entry or test.startswith(entry + "::") for entry in SLOW_IN_FAST_TIERS)


def pytest_collection_modifyitems(config, items):
    """Mark every test with its tier; everything outside the fast tiers, and the listed tests
    in them, `slow` (markers registered in pyproject.toml)."""
    for item in items:
        try:
            tier = Path(item.path).resolve().relative_to(TESTS_DIR).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
        if tier not in FAST_TIERS or is_listed_slow(item.nodeid):
            item.add_marker(pytest.mark.slow)


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
    """A models directory holding `tiny-word-lstm`, trained by `training.train_lm`, on one
    thread: its matrices are too small to gain from a second, which only waits at every
    operation (and, on cores other work shares, makes training many times slower)."""
    import torch

    from training.train_lm import main as train

    models_dir = tmp_path_factory.mktemp("models")
    run_dir = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    try:
        train([
            "--data", str(tiny_corpus), "--level", "word", "--embedding-dim", "32", "--hidden-dim", "48",
            "--num-layers", "1", "--dropout", "0", "--batch-size", "16", "--bptt", "20", "--lr", "1e-2",
            "--epochs", "2", "--tie-weights", "--run-dir", str(run_dir), "--export-dir", str(models_dir / "tiny-word-lstm"),
            "--no-progress", "--seed", "7", "--threads", "1",
        ])
    finally:
        torch.set_num_threads(threads)  # the tests after it run as they would alone
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
