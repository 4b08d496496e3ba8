"""train_lm under torchrun: two CPU processes (gloo) splitting the global batch take the same
steps as one process with the whole batch, and only rank 0 writes."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_language_model
from tests.conftest import free_port

ARGS = ["--level", "word", "--embedding-dim", "16", "--hidden-dim", "24", "--num-layers", "2", "--dropout", "0",
        "--batch-size", "8", "--bptt", "12", "--lr", "5e-3", "--epochs", "2", "--max-epoch-steps", "6",
        "--weights-dtype", "float32", "--no-progress", "--seed", "5", "--threads", "1"]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_match_one(tmp_path, tiny_corpus):
    repository = Path(__file__).resolve().parents[2]
    torchrun = Path(sys.executable).with_name("torchrun")
    common = ["--data", str(tiny_corpus), *ARGS]
    run([sys.executable, "-m", "training.train_lm", *common, "--run-dir", str(tmp_path / "one"),
         "--export-dir", str(tmp_path / "one-model")], repository)
    run([str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "training.train_lm", *common,
         "--run-dir", str(tmp_path / "two"), "--export-dir", str(tmp_path / "two-model")], repository)

    one, two = load_language_model(tmp_path / "one-model"), load_language_model(tmp_path / "two-model")
    assert two.config["provenance"]["processes"] == 2
    assert two.config["provenance"]["steps"] == one.config["provenance"]["steps"] == 12
    for (name, a), (_, b) in zip(one.model.state_dict().items(), two.model.state_dict().items()):
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-3, msg=f"{name} differs")
    assert two.metrics["valid_loss"] == pytest.approx(one.metrics["valid_loss"], rel=1e-3)
    rows = list(csv.DictReader(open(tmp_path / "two" / "metrics.csv")))
    assert [row["epoch"] for row in rows] == ["1", "2"]  # written once, by rank 0


def test_batch_must_split_evenly(tmp_path, tiny_corpus):
    repository = Path(__file__).resolve().parents[2]
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "training.train_lm",
               "--data", str(tiny_corpus), *ARGS, "--batch-size", "7", "--run-dir", str(tmp_path / "odd")]
    result = subprocess.run(command, cwd=repository, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "not divisible" in result.stderr

