r"""Train the WikiText-2 flagship: AWD-LSTM (Merity et al., 2018) through `training.train_lm`.

    python -m training.train_flagship --data ../shared/data/wikitext-2 --run-dir runs/flagship \
        --export-dir runs/models/wikitext2-awd-lstm
    RNNSERVE_MODELS_DIR=runs/models make serve        # serves it beside the shipped models

The recipe is the paper's WikiText-2 one: three LSTM layers of 1,150 units on 400-wide tied
embeddings (here the top layer is projected to 400 for tying, since the stack has one width),
DropConnect 0.5 on the hidden-to-hidden matrices, variational dropout 0.65 on the embeddings,
0.2 between layers and 0.4 on the output, embedding dropout 0.1, AR 2 / TAR 1, weight decay
1.2e-6, batches of 80 x 70 tokens, SGD at learning rate 30 switching to averaged weights
(NT-ASGD) once validation stops improving. 42 M parameters: meant for a GPU (`--device cuda`;
on 2 CPU cores a step takes about 6 s and an epoch 40 minutes; every improving epoch is exported
to RUN_DIR/export/, so a stopped run leaves a servable model there, and re-running the command
resumes; the export directory gets the best epoch when training ends, or after every improving
one with `--export-every-improvement`). `--optimizer adamw`
swaps NT-ASGD for AdamW with a cosine schedule. `--tiny` runs the same path at toy sizes (a
test keeps the script working on the CPU). Any other option is passed to `train_lm` as it is,
after the recipe's, so it wins (e.g. `--epochs 100`, `--precision bf16`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import train_lm
from training.cli import parser_for, run_cli

AWD_WIKITEXT2 = [
    "--level", "word", "--style", "wikitext", "--cell", "lstm",
    "--embedding-dim", "400", "--hidden-dim", "1150", "--num-layers", "3", "--tie-weights",
    "--awd", "--weight-drop", "0.5", "--input-dropout", "0.65", "--hidden-dropout", "0.2", "--dropout", "0.4",
    "--embedding-dropout", "0.1", "--activation-penalty", "2", "--temporal-penalty", "1",
    "--batch-size", "80", "--bptt", "70", "--clip", "0.25", "--weight-decay", "1.2e-6",
    "--epochs", "500", "--patience", "1000", "--weights-dtype", "float16",
    "--example-prompt", "The game was released in",
]
OPTIMIZERS = {
    "ntasgd": ["--optimizer", "ntasgd", "--lr", "30", "--schedule", "none", "--nonmono", "5"],
    "adamw": ["--optimizer", "adamw", "--lr", "2e-3", "--schedule", "cosine", "--weight-decay", "0.01"],
}
# The same path at toy sizes: seconds on a CPU.
TINY = ["--embedding-dim", "16", "--hidden-dim", "24", "--num-layers", "2", "--batch-size", "8", "--bptt", "12",
        "--epochs", "3", "--max-epoch-steps", "6", "--nonmono", "1", "--weights-dtype", "float32", "--no-progress"]


def recipe(optimizer: str, tiny: bool) -> list[str]:
    return AWD_WIKITEXT2 + OPTIMIZERS[optimizer] + (TINY if tiny else [])


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="WikiText-2 (or any corpus of its layout)")
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="train_lm's run directory (checkpoints, metrics, log); running again resumes")
    parser.add_argument("--export-dir", type=Path, required=True, help="put it under a models directory to serve it")
    parser.add_argument("--optimizer", choices=list(OPTIMIZERS), default="ntasgd",
                        help="ntasgd: the paper's SGD then averaged weights; adamw: AdamW with a cosine schedule")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to check the script")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv if argv is not None else sys.argv[1:])
    command = [*recipe(args.optimizer, args.tiny), "--data", str(args.data), "--run-dir", str(args.run_dir),
               "--export-dir", str(args.export_dir), *extra]
    metrics = train_lm.main(command)
    print(f"serve it: RNNSERVE_MODELS_DIR={args.export_dir.parent} make serve", file=sys.stderr)
    return metrics


if __name__ == "__main__":
    run_cli(main)
