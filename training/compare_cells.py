r"""The cell comparison on one corpus: Kneser-Ney n-grams, then Elman RNN, Jordan network,
GRU, LSTM and peephole LSTM language models at the same parameter count, trained the same way;
one table of perplexities.

    python -m training.compare_cells --data ../shared/data/ptb --style ptb --params 4000000 \
        --run-dir runs/compare-ptb

Each cell's hidden size is chosen so that the whole model (embeddings, recurrent layers,
output head) has the parameter count closest to --params. Every model is trained by
`training.train_lm` and every n-gram model by `training.train_ngram`, in sub-directories of the
run directory; re-running the command resumes unfinished runs and reuses finished ones.
Writes RUN_DIR/results.md, results.json and results.png.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from models.artifacts import read_config
from models.cells import CELLS
from models.rnn_lm import LanguageModelConfig, RNNLanguageModel, count_parameters
from models.tokenizers import make_tokenizer
from training import train_lm, train_ngram
from training.cli import parser_for, run_cli
from training.corpus import CorpusFiles, lm_tokenizer_config, load_corpus

logger = logging.getLogger("training.compare_cells")
DEFAULT_CELLS = [name for name, cell in CELLS.items() if cell.in_default_comparison]


def model_config(args: argparse.Namespace, vocab_size: int, cell: str, hidden: int) -> LanguageModelConfig:
    return LanguageModelConfig(vocab_size=vocab_size, embedding_dim=args.embedding_dim, hidden_dim=hidden,
                               num_layers=args.num_layers, cell=cell, dropout=args.dropout,
                               head=args.head, adaptive_cutoffs=tuple(args.adaptive_cutoffs))


def hidden_for_budget(args: argparse.Namespace, vocab_size: int, cell: str) -> tuple[int, int]:
    """(hidden size, parameters) closest to the budget; the count grows with the hidden size,
    so a bisection finds it."""
    def parameters(hidden: int) -> int:
        return count_parameters(RNNLanguageModel(model_config(args, vocab_size, cell, hidden)))

    low, high = 8, 4096
    while high - low > 1:
        middle = (low + high) // 2
        if parameters(middle) <= args.params:
            low = middle
        else:
            high = middle
    best = min((low, high), key=lambda h: abs(parameters(h) - args.params))
    return best, parameters(best)


def train_cell(args: argparse.Namespace, cell: str, hidden: int) -> dict:
    export = args.run_dir / cell / "model"
    argv = ["--data", str(args.data), "--style", args.style, "--cell", cell, "--embedding-dim", str(args.embedding_dim),
            "--hidden-dim", str(hidden), "--num-layers", str(args.num_layers), "--dropout", str(args.dropout),
            "--head", args.head, "--adaptive-cutoffs", *map(str, args.adaptive_cutoffs), "--optimizer", "adamw",
            "--lr", str(args.cell_lr.get(cell, args.lr)), "--schedule", "cosine", "--batch-size", str(args.batch_size), "--bptt", str(args.bptt),
            "--epochs", str(args.epochs), "--patience", str(args.epochs), "--run-dir", str(args.run_dir / cell),
            "--export-dir", str(export), "--seed", str(args.seed), "--no-progress"]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    logger.info("training %s with hidden size %d", cell, hidden)
    train_lm.main(argv)
    return read_config(export)


def train_ngrams(args: argparse.Namespace, order: int) -> dict:
    output = args.run_dir / f"kn{order}" / "model"
    if not (output / "config.json").exists():
        train_ngram.main(["--data", str(args.data), "--style", args.style, "--order", str(order), "--output", str(output)])
    return read_config(output)


def write_results(run_dir: Path, rows: list[dict], title: str) -> str:
    lines = ["| model | hidden | parameters | learning rate | valid ppl | test ppl |", "|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row.get('hidden', '')} | {row['parameters']:,} | {row.get('lr', '')} | {row['valid_ppl']:.1f} | {row['test_ppl']:.1f} |")
    table = f"{title}\n\n" + "\n".join(lines) + "\n"
    (run_dir / "results.md").write_text(table)
    (run_dir / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar([row["model"] for row in rows], [row["test_ppl"] for row in rows], color="tab:blue")
    axis.set(ylabel="test perplexity (lower is better)", title=title)
    figure.tight_layout()
    figure.savefig(run_dir / "results.png", dpi=100)
    plt.close(figure)
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="directory with *train*/*valid*/*test* files, or one text file")
    parser.add_argument("--style", choices=["wikitext", "ptb", "plain"], default="ptb",
                        help="the corpus's tokenizer conventions (as train_lm --style)")
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="one sub-directory per model, and the results table; running again resumes")
    parser.add_argument("--params", type=int, default=4_000_000, help="parameter budget of each recurrent model")
    parser.add_argument("--cells", nargs="+", choices=sorted(CELLS), default=DEFAULT_CELLS,
                        help="recurrent cells to compare, in the table's order")
    parser.add_argument("--ngram-orders", type=int, nargs="*", default=[3, 5],
                        help="Kneser-Ney n-gram orders to train as baselines (none: no n-grams)")
    parser.add_argument("--embedding-dim", type=int, default=200, help="width of the word vectors, the same for every cell")
    parser.add_argument("--num-layers", type=int, default=2, help="recurrent layers stacked, the same for every cell")
    parser.add_argument("--dropout", type=float, default=0.3, help="dropout on the embeddings, between layers and on the output")
    parser.add_argument("--head", choices=["linear", "adaptive"], default="adaptive",
                        help="output layer: a full softmax, or an adaptive softmax (cheaper for large vocabularies)")
    parser.add_argument("--adaptive-cutoffs", type=int, nargs="*", default=[2000],
                        help="vocabulary ranks where the adaptive head's clusters start")
    parser.add_argument("--lr", type=float, default=2e-3, help="learning rate of every cell without a --cell-lr")
    parser.add_argument("--cell-lr", nargs="*", default=["rnn=5e-4", "jordan=5e-4"], metavar="CELL=LR",
                        help="a cell's own learning rate (the tanh RNN saturates at 2e-3 and stays at unigram "
                             "perplexity; the Jordan network's tanh recurrence gets the same)")
    # Zaremba et al.'s batch and window: three times the updates per epoch of 32 x 70, which
    # matters at a budget of a few epochs.
    parser.add_argument("--batch-size", type=int, default=20, help="parallel token streams per training step")
    parser.add_argument("--bptt", type=int, default=35, help="truncated backpropagation window, in tokens")
    parser.add_argument("--epochs", type=int, default=4, help="passes over the training text for each model")
    parser.add_argument("--seed", type=int, default=1111, help="random seed, the same for every model")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.cell_lr = {cell: float(lr) for cell, lr in (item.split("=", 1) for item in args.cell_lr)}
    except ValueError:
        parser.error("--cell-lr takes CELL=LR items, e.g. rnn=5e-4")
    args.run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    vocab_size = len(load_corpus(CorpusFiles.find(args.data), make_tokenizer(lm_tokenizer_config("word", args.style))).vocab)
    rows = []
    for order in args.ngram_orders:
        config = train_ngrams(args, order)
        rows.append({"model": f"KN {order}-gram", "parameters": config["parameters"], **_ppl(config)})
    for cell in args.cells:
        hidden, parameters = hidden_for_budget(args, vocab_size, cell)
        config = train_cell(args, cell, hidden)
        rows.append({"model": CELLS[cell].title, "hidden": hidden, "parameters": parameters,
                     "lr": args.cell_lr.get(cell, args.lr), **_ppl(config)})
    title = f"{args.data.name}: {args.num_layers} layers, embedding {args.embedding_dim}, ~{args.params / 1e6:.1f}M parameters, {args.epochs} epochs"
    print(write_results(args.run_dir, rows, title))
    return rows


def _ppl(config: dict) -> dict:
    metrics = config["metrics"]
    return {"valid_ppl": metrics["valid_ppl"], "test_ppl": metrics["test_ppl"]}


if __name__ == "__main__":
    run_cli(main)
