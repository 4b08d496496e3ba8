"""training.compare_cells: n-grams and the five cells at one parameter budget, one table."""
from __future__ import annotations

import json

from training.compare_cells import main as compare


def test_one_table_at_equal_parameter_counts(tmp_path, tiny_corpus):
    budget = 60_000
    rows = compare(["--data", str(tiny_corpus), "--style", "plain", "--run-dir", str(tmp_path), "--params", str(budget),
                    "--ngram-orders", "2", "--embedding-dim", "16", "--num-layers", "1", "--head", "linear",
                    "--adaptive-cutoffs", "--epochs", "1", "--batch-size", "8", "--bptt", "16", "--threads", "1"])
    assert [row["model"] for row in rows] == ["KN 2-gram", "Elman RNN (tanh)", "Jordan RNN", "GRU", "LSTM", "Peephole LSTM"]
    elman, jordan, gru, lstm, peephole = rows[1:]
    assert all(abs(row["parameters"] - budget) / budget < 0.02 for row in rows[1:]), rows
    # Equal budgets mean the simpler cells get wider: RNN > Jordan (an output layer more) > GRU
    # > LSTM >= peephole LSTM (three vectors more per layer) hidden sizes.
    assert elman["hidden"] > jordan["hidden"] > gru["hidden"] > lstm["hidden"] >= peephole["hidden"]
    assert all(row["test_ppl"] > 1 for row in rows)
    # The tanh recurrences get their own rate by default.
    assert [row["lr"] for row in rows[1:]] == [5e-4, 5e-4, 2e-3, 2e-3, 2e-3]
    assert json.loads((tmp_path / "results.json").read_text()) == rows
    assert (tmp_path / "results.md").read_text().count("\n| ") == 7  # header and six rows
    assert (tmp_path / "results.png").stat().st_size > 0
    assert (tmp_path / "lstm" / "train.log").read_text().count("epoch 1") == 1
