"""What every CLI does for a newcomer: defaults in --help, one-line errors, model ids as well as
paths, export directories never replaced by accident, artifacts any user can read, raw text read
the way the service reads requests, and NLTK's data found without setting anything."""
import json
import os
import stat
import subprocess
import sys

import pytest

from models.checkpoint import load_language_model
from tests.conftest import REPOSITORY_ROOT
from training import evaluate_lm, evaluate_pairs
from training.cli import UsageError
from training.train_lm import main as train_lm
from training.train_ngram import main as train_ngram

RAW_LINES = [
    "The cat sat on the mat. It was warm, we think?",
    "My friend looked at the dog, and the dog ran to the house.",
    "A small child walked past the river. Was it cold? We don't know.",
    "The old man slept near a red car, then he sat on the mat.",
]


def run_module(module: str, *args: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "RNNSERVE_NLTK_DATA")} | env
    return subprocess.run([sys.executable, "-m", module, *args], cwd="/", env=environment, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def raw_corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("raw")
    for split, repeat in (("train", 60), ("valid", 6)):
        (directory / f"{split}.txt").write_text("\n".join(RAW_LINES * repeat) + "\n")
    return directory


@pytest.mark.parametrize("module", ["training.train_lm", "training.train_ngram", "training.evaluate_lm", "training.evaluate_pairs",
                                    "training.train_captioner", "training.evaluate_captioner"])
def test_help_shows_every_default(module):
    result = run_module(module, "--help")
    assert result.returncode == 0 and "(default:" in result.stdout


def test_a_users_mistake_is_one_line_not_a_traceback(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"sentence_good": "a b", "sentence_bad": "b a"}\n')
    result = run_module("training.evaluate_pairs", "no-such-model", str(pairs))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: no model 'no-such-model'")
    missing = run_module("training.train_ngram", "--data", str(tmp_path / "missing.txt"), "--output", str(tmp_path / "out"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "missing.txt" in missing.stderr


def test_evaluation_clis_take_a_model_id(tiny_models_dir, monkeypatch, capsys):
    monkeypatch.setenv("RNNSERVE_MODELS_DIR", str(tiny_models_dir))
    result = evaluate_pairs.main(["tiny-word-lstm", str(REPOSITORY_ROOT / "tests" / "data" / "minimal_pairs.jsonl")])
    assert result["model"] == "tiny-word-lstm" and result["pairs"] >= 40
    # The shipped models are found by id without any setting.
    monkeypatch.delenv("RNNSERVE_MODELS_DIR")
    assert evaluate_pairs.main(["shakespeare-char-lstm", str(REPOSITORY_ROOT / "tests" / "data" / "minimal_pairs.jsonl")])["pairs"] >= 40


def test_export_never_replaces_a_model_without_force(tiny_corpus, tmp_path):
    output = tmp_path / "kn2"
    train_ngram(["--data", str(tiny_corpus), "--order", "2", "--output", str(output)])
    before = (output / "config.json").read_text()
    with pytest.raises(UsageError, match="--force"):
        train_ngram(["--data", str(tiny_corpus), "--order", "3", "--output", str(output)])
    assert (output / "config.json").read_text() == before
    train_ngram(["--data", str(tiny_corpus), "--order", "3", "--output", str(output), "--force"])
    assert json.loads((output / "config.json").read_text())["provenance"]["order"] == 3


def test_train_lm_refuses_another_runs_export_directory(tiny_corpus, tiny_model_path, tmp_path):
    args = ["--data", str(tiny_corpus), "--embedding-dim", "8", "--hidden-dim", "8", "--num-layers", "1", "--epochs", "1",
            "--max-steps", "2", "--no-progress", "--run-dir", str(tmp_path / "run"), "--export-dir", str(tiny_model_path)]
    revision = (tiny_model_path / "model.safetensors").read_bytes()
    with pytest.raises(UsageError, match="already holds a model"):
        train_lm(args)
    assert (tiny_model_path / "model.safetensors").read_bytes() == revision


def test_artifacts_are_readable_by_every_user(tiny_corpus, tmp_path):
    previous = os.umask(0o077)  # the strictest umask a user might have
    try:
        train_lm(["--data", str(tiny_corpus), "--embedding-dim", "8", "--hidden-dim", "8", "--num-layers", "1", "--epochs", "1",
                  "--max-steps", "2", "--no-progress", "--run-dir", str(tmp_path / "run"), "--export-dir", str(tmp_path / "m")])
    finally:
        os.umask(previous)
    directory = tmp_path / "m"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    for name in ("config.json", "vocab.json", "model.safetensors"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o644, name


def test_plain_text_is_tokenized_the_way_requests_are(raw_corpus, tmp_path, capsys):
    export = tmp_path / "raw-lstm"
    metrics = train_lm(["--data", str(raw_corpus), "--level", "word", "--style", "plain", "--embedding-dim", "16",
                        "--hidden-dim", "16", "--num-layers", "1", "--epochs", "2", "--batch-size", "4", "--bptt", "10",
                        "--no-progress", "--run-dir", str(tmp_path / "run"), "--export-dir", str(export)])
    loaded = load_language_model(export)
    assert "mat" in loaded.vocab and "." in loaded.vocab and "," in loaded.vocab
    assert not {"mat.", "warm,", "think?", "cold?"} & set(loaded.vocab.tokens)
    request = loaded.encode_text("The cat sat on the mat.")
    assert not any(request.oov)  # what a request says is what training saw
    # evaluate_lm reads the file as training read it: the same perplexity, no unknown tokens.
    evaluated = evaluate_lm.main([str(export), "--data", str(raw_corpus / "valid.txt")])
    assert evaluated["oov_tokens"] == 0
    assert evaluated["perplexity"] == pytest.approx(metrics["valid_ppl"], rel=1e-3)


def test_an_untokenized_vocabulary_is_warned_about(raw_corpus, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        train_ngram(["--data", str(raw_corpus), "--order", "2", "--style", "plain", "--no-tokenize-raw", "--output", str(tmp_path / "kn")])
    assert "LOOKS UNTOKENIZED" in caplog.text and "'dog,'" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        train_ngram(["--data", str(raw_corpus), "--order", "2", "--style", "plain", "--output", str(tmp_path / "kn-tokenized")])
    assert "UNTOKENIZED" not in caplog.text


@pytest.mark.skipif(not (REPOSITORY_ROOT.parent / "shared" / "data" / "nltk_data").is_dir(), reason="no data folder beside the checkout")
def test_nltk_data_beside_the_checkout_is_found_without_a_setting():
    code = "from models.tokenizers.words import _punkt_available, split_sentences; print(_punkt_available(), split_sentences('Mr. Smith came. He sat.'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k not in ("NLTK_DATA", "RNNSERVE_NLTK_DATA")})
    assert result.stdout.startswith("True") and "not found" not in result.stderr
    assert "['Mr. Smith came.', 'He sat.']" in result.stdout  # Punkt knows "Mr." does not end a sentence
