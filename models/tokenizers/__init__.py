"""Tokenizers, one per level, behind one interface (`models.tokenizers.base.Tokenizer`):
``word`` (NLTK, with corpus styles), ``char`` and ``sentencepiece``. A model's config.json
names its level; `make_tokenizer` builds the matching one."""
from __future__ import annotations

from pathlib import Path

from models.tokenizers.base import (CONTEXT_TOKENS, QUOTE, Tokenizer, TokenizerConfig, context_window, current_line,
                                   text_start)
from models.tokenizers.characters import CharTokenizer
from models.tokenizers.pieces import SentencePieceTokenizer
from models.tokenizers.words import WordTokenizer, split_sentences, use_nltk_data

TOKENIZERS: dict[str, type[Tokenizer]] = {cls.level: cls for cls in (WordTokenizer, CharTokenizer, SentencePieceTokenizer)}
LEVELS = tuple(TOKENIZERS)


def make_tokenizer(config: TokenizerConfig, directory: str | Path | None = None) -> Tokenizer:
    """The tokenizer `config` describes; `directory` holds the files it names (a piece model)."""
    if config.level not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer level {config.level!r} (known: {', '.join(LEVELS)})")
    return TOKENIZERS[config.level](config, Path(directory) if directory is not None else None)


__all__ = ["CONTEXT_TOKENS", "LEVELS", "QUOTE", "TOKENIZERS", "Tokenizer", "TokenizerConfig", "context_window",
           "current_line", "make_tokenizer", "split_sentences", "text_start", "use_nltk_data"]
