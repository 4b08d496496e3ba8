r"""Perplexity of an exported language model on a text file, the standard way.

    python -m training.evaluate_lm weights/wikitext2-lstm --data ../shared/data/wikitext-2/test.txt

Works for recurrent models and for n-gram models (`training.train_ngram`) alike.
`--interpolate MODEL:WEIGHT` mixes other models in per token (p = Σ λ p_model; the first model
gets the remaining weight), `--interpolate MODEL --tune-on VALID` chooses the weight on VALID:

    python -m training.evaluate_lm wikitext2-lstm --data ../shared/data/wikitext-2/test.txt \
        --interpolate runs/ngram/wikitext2-kn5 --tune-on ../shared/data/wikitext-2/valid.txt

`--precision int8` scores with the model's recurrent and output layers in int8 (as the service
serves it with RNNSERVE_PRECISION=int8); `--compare-precision fp32` also scores every token at that
other precision and reports the perplexity ratio and the per-token |Δ log p| (docs/quantization.md):

    python -m training.evaluate_lm wikitext2-lstm --data ../shared/data/wikitext-2/test.txt \
        --precision int8 --compare-precision fp32

The file is read like the model's training read its corpus (one <eos> per line for word
models, through the service's tokenizer when training tokenized raw text; every character for
char models) and scored as one stream with the hidden state carried across lines; the
result agrees with what training reported for the same split.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.artifacts import CheckpointError
from models.interpolation import Tokenization, check_weights, incompatibility, mix
from models.quantization import PRECISIONS
from models.registry import is_language_model, load_model
from models.streams import EVAL_BATCH_SIZE, EVAL_BPTT
from training.cli import UsageError, parser_for, resolve_model, run_cli
from training.corpus import count_words, model_reads_raw_text, read_tokens
from training.evaluation import perplexity, word_perplexity


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("checkpoint", type=resolve_model, help="model directory, or a model id in the model directories")
    parser.add_argument("--data", type=Path, required=True, help="text file to score")
    parser.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE,
                        help="parallel streams the text is split into (the value training reports with)")
    parser.add_argument("--bptt", type=int, default=EVAL_BPTT, help="tokens scored per step of each stream")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="what the model computes in (int8: recurrent and output layers, CPU only)")
    parser.add_argument("--compare-precision", choices=PRECISIONS, default=None,
                        help="also score every token at this precision, one stream (batch size 1), and report the "
                             "perplexity ratio and the per-token |Δ log p| (default: no comparison)")
    parser.add_argument("--interpolate", action="append", default=[], metavar="MODEL:WEIGHT",
                        help="mix this model in per token with this weight (repeat; the first model gets the rest)")
    parser.add_argument("--tune-on", type=Path, default=None,
                        help="choose the --interpolate model's weight (one model; give it as MODEL) on this file, e.g. valid "
                             "(default: the weights given)")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    loaded = load_model(args.checkpoint, args.device, args.precision)
    if not is_language_model(loaded.model_type):
        raise CheckpointError(f"{args.checkpoint} is a {loaded.model_type}, not a language model")
    # Read the file exactly as the model's training read its corpus.
    tokens = read_tokens(args.data, loaded.tokenizer, model_reads_raw_text(loaded.config))
    ids = torch.tensor(loaded.vocab.encode(tokens), dtype=torch.long)
    started = time.time()
    measured = loaded.stream_token_logprobs(ids, args.bptt, args.device) if args.compare_precision else None
    if measured is not None and args.batch_size == 1:  # the same stream: its loss is these tokens' mean
        loss = float(-measured.mean())
    else:
        loss = loaded.stream_loss(ids, args.batch_size, args.bptt, args.device)
    seconds = time.time() - started
    result = {
        "model": loaded.model_id,
        "precision": loaded.precision,
        "data": str(args.data),
        "tokens": int(ids.numel()),
        "oov_tokens": int((ids == loaded.vocab.unk_id).sum()),
        "loss_nats_per_token": round(loss, 5),
        "perplexity": round(perplexity(loss), 3),
        "tokens_per_second": round((ids.numel() - 1) / seconds, 1),
    }
    if loaded.tokenizer.reports_word_perplexity:
        # Per word (whitespace-separated, one <eos> per line), comparable with word models.
        words = count_words(args.data)
        result.update(words=words, word_perplexity=word_perplexity(loss, ids.numel(), words))
    if args.compare_precision:
        other = load_model(args.checkpoint, args.device, args.compare_precision)
        result["comparison"] = precision_gap(other.stream_token_logprobs(ids, args.bptt, args.device), measured, other.precision)
    if args.interpolate:
        result["interpolation"] = interpolated(loaded, args, result["perplexity"])
    print(json.dumps(result, indent=2))
    return result


def precision_gap(reference: np.ndarray, measured: np.ndarray, reference_precision: str) -> dict:
    """How far per-token log-probabilities (natural log) at one precision are from another's on
    the same tokens: the loss difference (nats per token), the perplexity ratio and |Δ log p|."""
    difference = np.abs(measured - reference)
    loss_gap = float(reference.mean() - measured.mean())
    return {"against": reference_precision, "tokens": int(len(reference)),
            "loss_nats_per_token": round(float(-measured.mean()), 5), "reference_loss_nats_per_token": round(float(-reference.mean()), 5),
            "loss_difference_nats": round(loss_gap, 5), "perplexity_ratio": round(float(np.exp(loss_gap)), 5),
            "abs_logprob_difference_max": round(float(difference.max()), 5),
            "abs_logprob_difference_mean": round(float(difference.mean()), 6)}


def parse_mixture(specs: list[str], tune: bool) -> list[tuple[Path, float | None]]:
    parts = []
    for spec in specs:
        name, _, weight = spec.rpartition(":") if ":" in spec else (spec, "", "")
        if tune:
            parts.append((resolve_model(name or spec), None))
            continue
        try:
            parts.append((resolve_model(name), float(weight)))
        except ValueError as error:
            raise UsageError(f"--interpolate {spec}: give MODEL:WEIGHT (or --tune-on FILE)") from error
    if tune and len(parts) != 1:
        raise UsageError("--tune-on chooses the weight of exactly one --interpolate model")
    return parts


def mixture_logprobs(models: list, path: Path) -> np.ndarray:
    """(models, tokens): every model's log p of each token of `path`, read as the first model's
    training read its corpus."""
    first = models[0]
    tokens = read_tokens(path, first.tokenizer, model_reads_raw_text(first.config))
    rows = []
    for model in models:
        ids = torch.tensor(model.vocab.encode(tokens), dtype=torch.long)
        rows.append(model.stream_token_logprobs(ids))
    return np.stack(rows)


def interpolated(loaded, args, alone: float) -> dict:
    """Perplexity of the first model mixed per token with the --interpolate models."""
    parts = parse_mixture(args.interpolate, args.tune_on is not None)
    others = [load_model(path, args.device) for path, _ in parts]
    first_tokens = Tokenization.of(loaded)
    for other in others:
        if not is_language_model(other.model_type):
            raise UsageError(f"{other.model_id} is not a language model")
        why = incompatibility(first_tokens, Tokenization.of(other))
        if why or other.tokenizer.config.start_token != loaded.tokenizer.config.start_token:
            raise UsageError(f"{other.model_id} cannot be mixed per token with {loaded.model_id}: {why or 'other sentence boundaries'}")
    models = [loaded, *others]
    tuned_on = None
    if args.tune_on is not None:
        tune = mixture_logprobs(models, args.tune_on)
        grid = np.round(np.arange(0.0, 1.0001, 0.05), 2)
        losses = [-mix(tune, [1 - w, w]).mean() for w in grid]
        weights = [float(1 - grid[int(np.argmin(losses))]), float(grid[int(np.argmin(losses))])]
        tuned_on = str(args.tune_on)
    else:
        weights = [1.0 - sum(w for _, w in parts), *[w for _, w in parts]]
    check_weights(weights)
    loss = float(-mix(mixture_logprobs(models, args.data), weights).mean())
    return {"weights": {m.model_id: round(w, 4) for m, w in zip(models, weights)}, "tuned_on": tuned_on,
            "loss_nats_per_token": round(loss, 5), "perplexity": round(perplexity(loss), 3),
            "first_model_alone_perplexity": alone}



if __name__ == "__main__":
    run_cli(main)
