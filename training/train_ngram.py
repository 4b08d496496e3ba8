r"""Estimate an interpolated modified Kneser-Ney n-gram model and export it for serving.

    python -m training.train_ngram --data ../shared/data/wikitext-2 --order 5 \
        --output runs/ngram/wikitext2-kn5

The corpus is read exactly as `training.train_lm` reads it (same vocabulary rules, one <eos>
per line), and valid/test perplexities are measured the same way (`training.evaluate_lm` gives
the same numbers), so the n-gram rows of the results table compare with the recurrent ones.
The export directory is served by /v1/score like any language model (model_type "ngram").
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from models.artifacts import staged_model_directory
from models.ngram_checkpoint import save_ngram_model
from models.tokenizers import TOKENIZERS, make_tokenizer
from training.arpa import write_arpa
from training.cli import check_export_target, parser_for, run_cli
from training.corpus import (CorpusFiles, corpus_reading, default_tokenize_raw, lm_tokenizer_config, load_corpus,
                             with_start_context)
from training.evaluation import perplexity
from training.kneser_ney import estimate
from training.spelling import DEFAULT_ORDER, attach_spelling

logger = logging.getLogger("training.train_ngram")
# The levels whose tokenizers need no file learnt from the text (a piece model is learnt by
# training.train_lm only).
NGRAM_LEVELS = [level for level, tokenizer in TOKENIZERS.items() if tokenizer.model_file_name is None]


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="directory with *train*/*valid*/*test* files, or one text file")
    parser.add_argument("--order", type=int, default=5, help="n: each word is predicted from the n-1 before it (1 to 9)")
    parser.add_argument("--output", type=Path, required=True, help="export directory (the model id is its name)")
    parser.add_argument("--level", choices=NGRAM_LEVELS, default="word", help="what a token is: a word or a character")
    parser.add_argument("--style", choices=["wikitext", "ptb", "plain"], default="wikitext",
                        help="tokenizer conventions the service applies to raw request text")
    parser.add_argument("--tokenize-raw", action=argparse.BooleanOptionalAction, default=None,
                        help="run the text through the service's tokenizer (default: on for --style plain only)")
    parser.add_argument("--force", action="store_true", help="replace a model already in the output directory")
    parser.add_argument("--arpa", type=Path, default=None, help="also write the model as an ARPA file, .gz to compress (default: none)")
    parser.add_argument("--spelling-order", type=int, default=DEFAULT_ORDER,
                        help="order of the character n-gram that spells unknown words (word models; 0: none; "
                             "a vocabulary too small for it gets the order it supports)")
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="valid share of a single-file corpus")
    parser.add_argument("--max-vocab", type=int,
                        help="keep the most frequent words, the rest become <unk> (default: every word seen --min-count times)")
    parser.add_argument("--min-count", type=int, default=1, help="words seen fewer times in the training text become <unk>")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 1 <= args.order <= 9:
        parser.error("--order must be between 1 and 9")

    check_export_target(args.output, args.force)
    tokenize_raw = default_tokenize_raw(args.style, args.tokenize_raw)
    files = CorpusFiles.find(args.data, args.valid_fraction)
    tokenizer_config = lm_tokenizer_config(args.level, args.style)
    tokenizer = make_tokenizer(tokenizer_config)
    corpus = load_corpus(files, tokenizer, args.max_vocab, args.min_count, tokenize_raw)
    boundary = corpus.vocab.id(tokenizer_config.start_token)
    # The stream starts after a boundary token, as every line after the first does.
    train = np.concatenate([[boundary], corpus.train.numpy()])
    started = time.time()
    ngram_ids: list = []
    model, summary = estimate(train, len(corpus.vocab), args.order, ngram_ids)
    logger.info("estimated %d n-grams in %.1f s", model.num_ngrams, time.time() - started)

    metrics: dict = {}
    for split, ids in (("valid", corpus.valid), ("test", corpus.test)):
        if ids is not None:
            loss = model.stream_loss(ids.numpy())
            metrics.update({f"{split}_loss": round(loss, 5), f"{split}_ppl": round(perplexity(loss), 3)})
    metrics["eval"] = {"unit": tokenizer.loss_unit}
    provenance = {
        "data": files.provenance(),
        "tokens": {"train": int(corpus.train.numel())},
        "estimator": "interpolated modified Kneser-Ney",
        **summary,
        "command": "python -m training.train_ngram " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    with staged_model_directory(args.output, replace=args.force) as staging:
        save_ngram_model(staging, model, corpus.vocab, with_start_context(tokenizer_config, corpus),
                         {"model_id": args.output.name, **corpus_reading(tokenize_raw), "provenance": provenance, "metrics": metrics})
        if tokenizer.spells_unknown_words and args.spelling_order > 0:
            attach_spelling(staging, corpus.vocab, corpus.train_counts, args.spelling_order)
    if args.arpa is not None:
        write_arpa(args.arpa, corpus.vocab.tokens, ngram_ids, [t.logprob for t in model.tables], [t.backoff for t in model.tables],
                   boundary=tokenizer_config.start_token)
        logger.info("wrote %s", args.arpa)
    logger.info("exported %s: %s", args.output, metrics)
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    run_cli(main)
