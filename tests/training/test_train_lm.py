import csv
import json

import pytest
import torch

from models.checkpoint import load_language_model
from training import evaluate_lm
from training.train_lm import main as train


def test_smoke_run_exports_a_loadable_model_with_metrics(tiny_model_path, tiny_corpus):
    config = json.loads((tiny_model_path / "config.json").read_text())
    metrics = config["metrics"]
    assert config["model_type"] == "rnn_lm" and config["format_version"] == 1
    assert {"valid_loss", "valid_ppl", "test_ppl"} <= set(metrics)
    assert config["provenance"]["data"]["train"]["sha256"]
    # The grammar has few choices per position: a trained model is far below uniform.
    loaded = load_language_model(tiny_model_path)
    assert metrics["valid_ppl"] < len(loaded.vocab) / 3


def test_evaluate_lm_agrees_with_training(tiny_model_path, tiny_corpus, capsys):
    metrics = json.loads((tiny_model_path / "config.json").read_text())["metrics"]
    valid = evaluate_lm.main([str(tiny_model_path), "--data", str(tiny_corpus / "valid.txt")])
    test = evaluate_lm.main([str(tiny_model_path), "--data", str(tiny_corpus / "test.txt")])
    assert valid["perplexity"] == pytest.approx(metrics["valid_ppl"], rel=1e-3)
    assert test["perplexity"] == pytest.approx(metrics["test_ppl"], rel=1e-3)


def test_run_directory_has_metrics_and_plot(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    train(["--data", str(tiny_corpus / "train.txt"), "--level", "char", "--embedding-dim", "8", "--hidden-dim", "16",
           "--num-layers", "1", "--batch-size", "8", "--bptt", "16", "--epochs", "1", "--max-steps", "5",
           "--run-dir", str(run_dir), "--no-progress", "--cell", "gru"])
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(rows) == 1 and float(rows[0]["valid_loss"]) > 0
    assert (run_dir / "curves.png").stat().st_size > 0
    assert (run_dir / "last.pt").exists()
    assert load_language_model(run_dir / "export" / "model").level == "char"


def test_interrupted_run_resumes(tmp_path, tiny_corpus):
    run_dir = tmp_path / "run"
    common = ["--data", str(tiny_corpus), "--embedding-dim", "8", "--hidden-dim", "16", "--num-layers", "1",
              "--batch-size", "8", "--bptt", "10", "--run-dir", str(run_dir), "--no-progress", "--epochs", "2",
              "--checkpoint-every", "5"]
    train(common + ["--max-steps", "7"])  # stops inside epoch 1, as an interruption would
    first = list(csv.DictReader(open(run_dir / "metrics.csv")))
    train(common)
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert len(rows) >= len(first)
    assert int(rows[-1]["step"]) > 7


@pytest.mark.parametrize("every_improvement", [False, True], ids=["at-the-end", "every-improvement"])
def test_a_retrain_writes_its_export_directory_when_it_ends(tmp_path, tiny_corpus, monkeypatch, every_improvement):
    """A run exporting into a served models directory leaves it alone until training ends (a
    reload meanwhile keeps the model it had): its improving epochs go to the run directory,
    unless --export-every-improvement."""
    from training.train_lm import Trainer

    run_dir, models_dir = tmp_path / "run", tmp_path / "models"
    args = ["--data", str(tiny_corpus), "--embedding-dim", "8", "--hidden-dim", "16", "--num-layers", "1", "--batch-size", "8",
            "--bptt", "10", "--epochs", "3", "--max-epoch-steps", "4", "--run-dir", str(run_dir),
            "--export-dir", str(models_dir / "tiny"), "--no-progress"] + (["--export-every-improvement"] if every_improvement else [])
    train_epoch = Trainer.train_epoch

    def stopped_in_the_second_epoch(self):
        if self.state.epoch == 2:
            raise KeyboardInterrupt  # the person running it stops it
        return train_epoch(self)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_epoch", stopped_in_the_second_epoch)
        with pytest.raises(KeyboardInterrupt):
            train(args)
    first_epoch = json.loads((run_dir / "export" / "tiny" / "config.json").read_text())
    assert first_epoch["metrics"]["best_epoch"] == 1
    if every_improvement:
        assert json.loads((models_dir / "tiny" / "config.json").read_text())["metrics"] == first_epoch["metrics"]
    else:
        assert not models_dir.exists() or list(models_dir.iterdir()) == []
    metrics = train(args)  # resumes in epoch 2 and ends
    final = json.loads((models_dir / "tiny" / "config.json").read_text())
    assert final["metrics"] == metrics and "test_ppl" in metrics
    assert final == json.loads((run_dir / "export" / "tiny" / "config.json").read_text())
    assert load_language_model(models_dir / "tiny").spelling is not None
    assert [p.name for p in models_dir.iterdir()] == ["tiny"]


@pytest.mark.parametrize("head", ["linear", "adaptive"])
def test_bf16_mixed_precision_trains_like_fp32(tmp_path, tiny_corpus, head):
    """--precision bf16 (autocast) keeps fp32 weights and an fp32 loss and learns as fp32 does;
    on a CPU without bf16 instructions it stops at once and says why."""
    from training.run_setup import bf16_recurrence_supported

    if not bf16_recurrence_supported(torch.device("cpu")):
        with pytest.raises(SystemExit, match="--precision fp32"):
            train(["--data", str(tiny_corpus), "--precision", "bf16", "--run-dir", str(tmp_path / "bf16"), "--no-progress"])
        assert not (tmp_path / "bf16" / "export").exists()
        return
    results = {}
    for precision in ("fp32", "bf16"):
        results[precision] = train([
            "--data", str(tiny_corpus), "--level", "word", "--embedding-dim", "24", "--hidden-dim", "32", "--num-layers", "1",
            "--dropout", "0", "--batch-size", "16", "--bptt", "16", "--lr", "1e-2", "--epochs", "1", "--max-steps", "40",
            "--head", head, "--adaptive-cutoffs", *(["10", "30"] if head == "adaptive" else []), "--precision", precision,
            "--weights-dtype", "float32", "--run-dir", str(tmp_path / precision), "--no-progress", "--seed", "3"])
        loaded = load_language_model(tmp_path / precision / "export" / "model")
        assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    vocab = len(load_language_model(tmp_path / "fp32" / "export" / "model").vocab)
    assert results["bf16"]["valid_ppl"] < vocab / 3  # learned: far below uniform
    assert results["bf16"]["valid_ppl"] == pytest.approx(results["fp32"]["valid_ppl"], rel=0.1)


@pytest.mark.parametrize("cell", ["peephole", "jordan"])
def test_the_written_out_cells_train_serve_generate_and_score(tmp_path, tiny_corpus, cell):
    """`train_lm --cell peephole|jordan` learns the grammar, and the service generates (batched
    decoding through the cell's step) and scores with the export."""
    from tests.api.conftest import open_client

    models_dir = tmp_path / "models"
    metrics = train(["--data", str(tiny_corpus), "--cell", cell, "--embedding-dim", "24", "--hidden-dim", "32",
                     "--num-layers", "2", "--dropout", "0", "--batch-size", "16", "--bptt", "16", "--lr", "1e-2",
                     "--epochs", "1", "--max-steps", "60", "--run-dir", str(tmp_path / "run"),
                     "--export-dir", str(models_dir / f"tiny-{cell}"), "--no-progress", "--seed", "3"])
    loaded = load_language_model(models_dir / f"tiny-{cell}")
    assert loaded.model.config.cell == cell
    assert metrics["valid_ppl"] < len(loaded.vocab) / 3
    client = open_client(models_dir)
    try:
        listed = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert f"tiny-{cell}" in listed
        prompts = ["the old man", "a bird sat on the"]
        generated = [client.post("/v1/generate", json={"model": f"tiny-{cell}", "prompt": p, "max_tokens": 6,
                                                       "strategy": "argmax"}).json() for p in prompts]
        assert all(g["choices"][0]["tokens"] for g in generated), generated
        scored = client.post("/v1/score", json={"model": f"tiny-{cell}",
                                                "texts": ["the dog sat on the mat .", "mat the on sat dog the ."]}).json()
        grammatical, scrambled = (r["logprob"] for r in scored["results"])
        assert grammatical > scrambled
    finally:
        client.__exit__(None, None, None)
