"""Training curves as PNG (matplotlib's non-interactive backend: no display needed)."""
from __future__ import annotations

import csv
from pathlib import Path


def plot_metrics(metrics_csv: Path, output: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    figure, (loss_axis, ppl_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("valid_loss", "valid")):
        loss_axis.plot(epochs, [float(r[key]) for r in rows], marker="o", label=label)
    loss_axis.set(xlabel="epoch", ylabel="loss (nats/token)", title="loss")
    loss_axis.legend()
    ppl_axis.plot(epochs, [float(r["valid_ppl"]) for r in rows], marker="o", color="tab:orange")
    ppl_axis.set(xlabel="epoch", ylabel="perplexity", title="validation perplexity", yscale="log")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
