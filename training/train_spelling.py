"""Give an existing word model (recurrent or n-gram) a spelling model, so that it scores words
outside its vocabulary as log p(<unk> | context) + log p_spell(word).

    python -m training.train_spelling wikitext2-lstm --data ../shared/data/wikitext-2

With --data (the corpus the model was trained on, read as its training read it), the spelling
model learns from the words the vocabulary cut off when there are enough of them; otherwise,
and without --data, from the rarer half of the vocabulary. The model's revision changes (its
cached results are not reused). The model is rewritten as a whole, through a copy renamed into
place, so a server that reloads meanwhile never sees half of it. See
`training.spelling`.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

from models.artifacts import VOCAB_FILE, read_config, staged_model_directory
from models.registry import is_language_model
from models.spelling import SPELLING_FILE
from models.tokenizers import TOKENIZERS, TokenizerConfig, make_tokenizer
from models.vocab import Vocabulary
from training.cli import UsageError, parser_for, resolve_model, run_cli
from training.corpus import CorpusFiles, model_reads_raw_text, read_tokens
from training.spelling import DEFAULT_ORDER, attach_spelling


def build_parser() -> argparse.ArgumentParser:
    parser = parser_for(__doc__)
    parser.add_argument("model", type=resolve_model, help="model directory or model id (a word-level language or n-gram model)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the model's training corpus, directory or file (default: none; the spelling model "
                             "learns from the rarer half of the vocabulary)")
    parser.add_argument("--order", type=int, default=DEFAULT_ORDER,
                        help="order of the character n-gram (a vocabulary too small for it gets the order it supports)")
    parser.add_argument("--force", action="store_true", help="replace the model's spelling model")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = read_config(args.model)
    tokenizer = TokenizerConfig.from_json(config.get("tokenizer", {}))
    level = TOKENIZERS.get(tokenizer.level)
    if not is_language_model(config.get("model_type")) or level is None or not level.spells_unknown_words:
        raise UsageError(f"{args.model} is not a word-level language model; only those spell unknown words")
    if (args.model / SPELLING_FILE).exists() and not args.force:
        raise UsageError(f"{args.model} has a spelling model already; pass --force to replace it")
    if not 1 <= args.order <= 9:
        raise UsageError("--order must be between 1 and 9")
    vocab = Vocabulary.load(args.model / VOCAB_FILE)
    counts = None
    if args.data is not None:
        files = CorpusFiles.find(args.data)
        counts = Counter(read_tokens(files.train, make_tokenizer(tokenizer), model_reads_raw_text(config)))
    # Through a link, the model it names is rewritten, not the link.
    with staged_model_directory(args.model.resolve(), replace=True) as staging:
        shutil.copytree(args.model, staging, dirs_exist_ok=True)
        info = attach_spelling(staging, vocab, counts, args.order)
    print(json.dumps(info, indent=2))
    return info


if __name__ == "__main__":
    run_cli(main)
