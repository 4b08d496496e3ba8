"""Tokenizers, one per level, behind one interface (`models.tokenizers.base.Tokenizer`):
``word`` (NLTK, with corpus styles), ``char`` and ``sentencepiece``. A model's config.json
names its level; `make_tokenizer` builds the matching one."""
from __future__ import annotations

from collections.abc import Container
from pathlib import Path

from models.tokenizers.base import CONTEXT_TOKENS, QUOTE, Tokenizer, TokenizerConfig, context_window, current_line
from models.tokenizers.characters import CharTokenizer
from models.tokenizers.pieces import SentencePieceTokenizer
from models.tokenizers.words import WordTokenizer, split_sentences, use_nltk_data

TOKENIZERS: dict[str, type[Tokenizer]] = {cls.level: cls for cls in (WordTokenizer, CharTokenizer, SentencePieceTokenizer)}
LEVELS = tuple(TOKENIZERS)


def tokenizer_class(level: str) -> type[Tokenizer]:
    """The registry's tokenizer of `level` (its class attributes are the level's facts)."""
    if level not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer level {level!r} (known: {', '.join(LEVELS)})")
    return TOKENIZERS[level]


def make_tokenizer(config: TokenizerConfig, directory: str | Path | None = None) -> Tokenizer:
    """The tokenizer `config` describes; `directory` holds the files it names (a piece model)."""
    return tokenizer_class(config.level)(config, Path(directory) if directory is not None else None)


def text_start(config: TokenizerConfig, vocab: Container[str]) -> tuple[str, ...]:
    """The tokens a model reads before every text it scores or continues: the start context its
    config.json records, else (a model exported without one) a blank line for a level whose
    passages follow blank lines, when the model knows its boundary token (a stream of text starts
    its passages, a play's speeches, after one; after a lone newline a character model expects
    a passage to go on), else the start token alone."""
    if config.start_context is not None:
        return config.start_context
    # A config.json of a level this registry lacks still has a start token to read texts after.
    level = TOKENIZERS.get(config.level)
    if level is not None and level.passages_follow_blank_lines and level.boundary_token in vocab:
        return (level.boundary_token,) * 2
    return (config.start_token,)


__all__ = ["CONTEXT_TOKENS", "LEVELS", "QUOTE", "TOKENIZERS", "Tokenizer", "TokenizerConfig", "context_window",
           "current_line", "make_tokenizer", "split_sentences", "text_start", "tokenizer_class", "use_nltk_data"]
