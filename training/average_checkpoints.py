r"""Average the weights of several checkpoints of one run (the tail of a training run) and
export the average, evaluated on valid and test — the cheap cousin of AWD-LSTM's averaged SGD
and of fairseq's `average_checkpoints`.

    python -m training.average_checkpoints runs/wt2/export/wikitext2-lstm \
        runs/wt2/snapshots/step-*.pt --data ../shared/data/wikitext-2 --output weights/wikitext2-lstm

EXPORT is the run's exported model (its config, vocabulary and tokenizer are kept); each
CHECKPOINT is a resumable `last.pt` from the run directory or a bare state dict of the same
architecture (loaded with `weights_only=True`). The average is exported only when it is
better on the validation split than EXPORT, unless --always.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path

import torch

from models.artifacts import COMPANION_FILES, CheckpointError, staged_model_directory
from models.checkpoint import load_language_model, save_language_model
from models.streams import stream_loss
from training.cli import check_export_target, parser_for, run_cli
from training.corpus import CorpusFiles, load_corpus, model_reads_raw_text
from training.evaluation import perplexity

logger = logging.getLogger("training.average_checkpoints")
# config.json entries that save_language_model writes from the model itself.
WRITTEN_BY_SAVE = {"model_type", "format_version", "architecture", "tokenizer", "weights_dtype", "parameters"}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, weights_only=True, map_location="cpu")
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a model state dict or a resumable checkpoint")
    return state


def average(paths: list[Path]) -> dict[str, torch.Tensor]:
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        state = read_state_dict(path)
        if total and state.keys() != total.keys():
            raise CheckpointError(f"{path}: its tensors differ from the first checkpoint's")
        for name, tensor in state.items():
            total[name] = total.get(name, 0) + tensor.double()
    return {name: (tensor / len(paths)).float() for name, tensor in total.items()}


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("export", type=Path, help="the run's exported model directory")
    parser.add_argument("checkpoints", type=Path, nargs="+", metavar="checkpoint",
                        help="resumable checkpoints (last.pt) or state dicts of the same run, to average")
    parser.add_argument("--data", type=Path, required=True, help="the corpus the run trained on")
    parser.add_argument("--output", type=Path, required=True, help="model directory to write the average to")
    parser.add_argument("--always", action="store_true", help="export even when the average is not better")
    parser.add_argument("--force", action="store_true", help="replace a model already in the output directory")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.output.resolve() != args.export.resolve():
        check_export_target(args.output, args.force)
    base = load_language_model(args.export)
    corpus = load_corpus(CorpusFiles.find(args.data), base.tokenizer, tokenize_raw=model_reads_raw_text(base.config), vocab=base.vocab)
    averaged = copy.deepcopy(base)
    averaged.model.load_state_dict(average(args.checkpoints))
    base_valid = stream_loss(base.model, corpus.valid)
    valid = stream_loss(averaged.model, corpus.valid)
    logger.info("valid ppl: exported %.3f, average of %d checkpoints %.3f", perplexity(base_valid), len(args.checkpoints), perplexity(valid))
    result = {"exported_valid_ppl": round(perplexity(base_valid), 3), "averaged_valid_ppl": round(perplexity(valid), 3), "written": False}
    if valid < base_valid or args.always:
        metrics = {"valid_loss": round(valid, 5), "valid_ppl": round(perplexity(valid), 3), "eval": base.metrics.get("eval")}
        if corpus.test is not None:
            test = stream_loss(averaged.model, corpus.test)
            metrics.update(test_loss=round(test, 5), test_ppl=round(perplexity(test), 3))
        provenance = dict(base.config.get("provenance", {}))
        provenance["averaged_checkpoints"] = [path.name for path in args.checkpoints]
        provenance["average_command"] = "python -m training.average_checkpoints " + " ".join(sys.argv[1:] if argv is None else argv)
        # What the export says beyond its weights (how its corpus was read, its spelling model,
        # its example prompt) holds for the average too, and its companion files come along.
        kept = {key: value for key, value in base.config.items() if key not in WRITTEN_BY_SAVE}
        companions = {name: args.export / name for name in COMPANION_FILES if (args.export / name).is_file()}
        with staged_model_directory(args.output, replace=True) as staging:
            save_language_model(staging, averaged.model, base.vocab, base.tokenizer.config,
                                {**kept, "model_id": args.output.name, "provenance": provenance, "metrics": metrics},
                                weights_dtype=base.config.get("weights_dtype", "float32"), files=companions)
        result.update(written=True, **metrics)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    run_cli(main)
