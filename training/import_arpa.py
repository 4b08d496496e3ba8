"""Import an ARPA n-gram file (KenLM, SRILM, Kaldi; plain or .gz, any order) as a servable
n-gram model.

    python -m training.import_arpa lm.arpa.gz --output my-models/my-kn5 --style plain

The model scores exactly as KenLM scores the file: the same back-off rule over the same
log-probabilities (natural logs here, log10 there). A sentence is scored from `<s>` through
`</s>`, the file's own start and end tokens. A word the file does not know is its `<unk>` (added
with log10 probability -100 when the file has none, as KenLM does), plus its spelling under the
character spelling model estimated here from the file's rarer words (`--spelling-order 0` for
none; a small vocabulary gets the order its spellings support). The tables are numpy arrays: no
Python object per n-gram. The model directory is written beside its target and renamed into
place: a failed import leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from models.artifacts import staged_model_directory
from models.ngram_checkpoint import save_ngram_model
from models.tokenizers import TokenizerConfig
from models.vocab import PAD, Vocabulary
from training.arpa import ARPA_BOS, ARPA_EOS, ARPA_UNK, LN10, NEVER_LOG10, read_arpa
from training.cli import check_export_target, parser_for, run_cli
from training.spelling import DEFAULT_ORDER, attach_spelling

logger = logging.getLogger("training.import_arpa")
ARPA_SPECIALS = {"pad": PAD, "unk": ARPA_UNK, "bos": ARPA_BOS, "eos": ARPA_EOS}


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("arpa", type=Path, help="the ARPA file (.arpa or .arpa.gz)")
    parser.add_argument("--output", type=Path, required=True, help="model directory to write (its name is the model id)")
    parser.add_argument("--style", choices=["wikitext", "ptb", "plain"], default="plain",
                        help="how request text is split into the file's words (the conventions its corpus followed)")
    parser.add_argument("--spelling-order", type=int, default=DEFAULT_ORDER,
                        help="character n-gram order of the spelling model (0: none; a vocabulary too small for it gets the order it supports)")
    parser.add_argument("--force", action="store_true", help="replace a model already in the output directory")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    check_export_target(args.output, args.force)
    if not args.arpa.is_file():
        raise FileNotFoundError(f"{args.arpa}: no such file")
    started = time.time()
    bars: dict[int, tqdm] = {}

    def progress(order: int, done: int, total: int) -> None:
        bar = bars.setdefault(order, tqdm(total=total, desc=f"{order}-grams", unit="n-gram", file=sys.stderr, leave=False))
        bar.update(done - bar.n)

    arpa = read_arpa(args.arpa, progress)
    for bar in bars.values():
        bar.close()
    if PAD not in arpa.words:  # the vocabulary format names a padding token; it is never predicted
        arpa.words.append(PAD)
        arpa.ngrams[0] = np.vstack([arpa.ngrams[0], [[len(arpa.words) - 1]]])
        arpa.logprob[0] = np.append(arpa.logprob[0], np.float32(NEVER_LOG10 * LN10))
        arpa.backoff[0] = np.append(arpa.backoff[0], np.float32(0.0))
    model = arpa.to_ngram_model()
    vocab = Vocabulary(list(arpa.words), dict(ARPA_SPECIALS))
    tokenizer = TokenizerConfig(level="word", style=args.style, start_token=ARPA_BOS, end_token=ARPA_EOS)
    seconds = round(time.time() - started, 1)
    provenance = {"arpa": {"path": str(args.arpa), "ngrams": {str(k + 1): int(len(n)) for k, n in enumerate(arpa.ngrams)}},
                  "import_seconds": seconds,
                  "command": "python -m training.import_arpa " + " ".join(sys.argv[1:] if argv is None else argv)}
    with staged_model_directory(args.output, replace=args.force) as staging:
        save_ngram_model(staging, model, vocab, tokenizer, {"model_id": args.output.name, "provenance": provenance, "metrics": {}})
        if args.spelling_order > 0:
            # Rank the words by their unigram probability: the rarer half teaches the spelling model.
            unigram = dict(zip((arpa.words[i] for i in arpa.ngrams[0][:, 0]), arpa.logprob[0].tolist()))
            attach_spelling(staging, vocab, Counter(unigram), args.spelling_order)
    summary = {"model": args.output.name, "order": arpa.order, "ngrams": model.num_ngrams, "words": len(arpa.words),
               "seconds": seconds}
    logger.info("imported %s: %s", args.arpa, summary)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
