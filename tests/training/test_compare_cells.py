"""training.compare_cells: n-grams and the three cells at one parameter budget, one table."""
from __future__ import annotations

import json

from training.compare_cells import main as compare


def test_one_table_at_equal_parameter_counts(tmp_path, tiny_corpus):
    budget = 60_000
    rows = compare(["--data", str(tiny_corpus), "--style", "plain", "--run-dir", str(tmp_path), "--params", str(budget),
                    "--ngram-orders", "2", "--embedding-dim", "16", "--num-layers", "1", "--head", "linear",
                    "--adaptive-cutoffs", "--epochs", "1", "--batch-size", "8", "--bptt", "16", "--threads", "1"])
    assert [row["model"] for row in rows] == ["KN 2-gram", "Elman RNN (tanh)", "GRU", "LSTM"]
    cells = rows[1:]
    assert all(abs(row["parameters"] - budget) / budget < 0.02 for row in cells), cells
    # Equal budgets mean the simpler cells get wider: RNN > GRU > LSTM hidden sizes.
    assert cells[0]["hidden"] > cells[1]["hidden"] > cells[2]["hidden"]
    assert all(row["test_ppl"] > 1 for row in rows)
    assert [row["lr"] for row in cells] == [5e-4, 2e-3, 2e-3]  # the tanh RNN gets its own rate by default
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert (tmp_path / "results.md").read_text().count("\n| ") == 5  # header and four rows
    assert (tmp_path / "results.png").stat().st_size > 0
    assert (tmp_path / "lstm" / "train.log").read_text().count("epoch 1") == 1
