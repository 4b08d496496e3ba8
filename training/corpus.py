"""Language-modelling corpora: a directory with train/valid/test files (WikiText-2, PTB) or a
single plain-text file split into train and valid, read as one token stream.

Each level reads a file its own way (`models.tokenizers.base.Tokenizer.read_corpus`). Word
level: each line's whitespace-separated tokens followed by ``<eos>`` (the standard way:
WikiText-2 and PTB are already tokenized). Pass ``tokenize_raw`` for untokenized text, which
then goes through the same NLTK tokenizer the service applies to requests.
Piece level (SentencePiece): each line's pieces followed by ``<eos>``.
Character level: every character, newlines included.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from models.artifacts import file_sha256
from models.tokenizers import Tokenizer, TokenizerConfig, tokenizer_class
from models.vocab import Vocabulary

SPLITS = ("train", "valid", "test")
logger = logging.getLogger(__name__)
# A word with punctuation glued to it ("mat.", "it,", "(we") is what untokenized text gives.
_GLUED_PUNCTUATION = re.compile(r"^[\w][\w'-]*[.,;:!?\")]$|^[\"(][\w]")
UNTOKENIZED_WARNING_SHARE = 0.01


@dataclass
class CorpusFiles:
    """Paths of the splits; `valid_fraction` carves valid out of the end of a single file."""

    train: Path
    valid: Path | None = None
    test: Path | None = None
    valid_fraction: float = 0.0

    @classmethod
    def find(cls, data: str | Path, valid_fraction: float = 0.1) -> "CorpusFiles":
        data = Path(data)
        if data.is_file():
            return cls(train=data, valid_fraction=valid_fraction)
        if not data.is_dir():
            raise FileNotFoundError(f"{data}: no such file or directory")
        found: dict[str, Path] = {}
        for split in SPLITS:
            matches = sorted(p for p in data.iterdir() if p.is_file() and split in p.name)
            if matches:
                found[split] = matches[0]
        if "train" not in found:
            raise FileNotFoundError(f"{data}: no file with 'train' in its name")
        if "valid" not in found:
            return cls(train=found["train"], test=found.get("test"), valid_fraction=valid_fraction)
        return cls(**found)

    def provenance(self) -> dict[str, dict[str, str]]:
        files = {"train": self.train, "valid": self.valid, "test": self.test}
        return {
            split: {"path": str(path), "sha256": file_sha256(path)}
            for split, path in files.items()
            if path is not None
        }


def lm_tokenizer_config(level: str, style: str) -> TokenizerConfig:
    """How every language model of this project reads text: lines separated (and a request
    started) by the level's boundary token (<eos> for words and pieces, a newline for
    characters), with the file the level's tokenizer needs, if any."""
    tokenizer = tokenizer_class(level)
    boundary = tokenizer.boundary_token
    return TokenizerConfig(level=level, style=style, start_token=boundary, end_token=boundary,
                           model_file=tokenizer.model_file_name, sentence_splitter=tokenizer.sentence_splitter_in_use())


# Blank lines mark a stream's passages (a play's speeches, a book's paragraphs) when at least
# this share of its newlines begin one; a stray blank line in a corpus of one sentence per line
# does not make "after a blank line" where its texts start.
PASSAGE_BREAK_SHARE = 0.01


def with_start_context(config: TokenizerConfig, corpus: "Corpus") -> TokenizerConfig:
    """`config` with the tokens a model trained on `corpus` reads every text after, for its
    config.json: a model of a level whose passages follow blank lines (characters) starts a text
    where a passage of its training stream starts (after a blank line when the stream has
    passages, else after a newline); word and piece models after the previous line's end token.
    Left unset when the vocabulary lacks the token."""
    level = tokenizer_class(config.level)
    boundary = level.boundary_token
    if not level.passages_follow_blank_lines:
        context = (config.start_token,) if config.start_token in corpus.vocab else None
    elif boundary not in corpus.vocab:
        context = None
    else:
        breaks = corpus.train == corpus.vocab.id(boundary)
        boundaries, blank_lines = int(breaks.sum()), int((breaks[:-1] & breaks[1:]).sum())
        has_passages = boundaries and blank_lines >= PASSAGE_BREAK_SHARE * boundaries
        context = (boundary, boundary) if has_passages else (boundary,)
    return replace(config, start_context=context)


def default_tokenize_raw(style: str, requested: bool | None) -> bool:
    """Plain text goes through the tokenizer the service applies to requests, so training and
    serving see the same tokens; WikiText-2 and PTB files come tokenized already."""
    return style == "plain" if requested is None else requested


def corpus_reading(tokenize_raw: bool) -> dict[str, Any]:
    """How the corpus was read, stored in config.json so evaluation reads files the same way."""
    return {"corpus": {"tokenize_raw": tokenize_raw}}


def model_reads_raw_text(config: dict[str, Any]) -> bool:
    return bool(config.get("corpus", {}).get("tokenize_raw", False))


def untokenized_tokens(counts: Counter[str]) -> tuple[float, list[str]]:
    """Share of the running tokens that look like words with punctuation glued on, and the
    most frequent of them."""
    # A word with punctuation glued on whose bare form also occurs ("mat." beside "mat"), not an
    # abbreviation that a tokenized corpus keeps whole ("mr.", "corp.").
    glued = [(token, count) for token, count in counts.items()
             if _GLUED_PUNCTUATION.match(token) and token.strip(".,;:!?\"()") in counts]
    total = sum(counts.values()) or 1
    share = sum(count for _, count in glued) / total
    return share, [token for token, _ in sorted(glued, key=lambda item: -item[1])[:8]]


def warn_if_untokenized(counts: Counter[str]) -> None:
    share, examples = untokenized_tokens(counts)
    if share >= UNTOKENIZED_WARNING_SHARE:
        logger.warning(
            "THE CORPUS LOOKS UNTOKENIZED: %.1f%% of its tokens are words with punctuation attached (%s). "
            "The service splits request text into words and punctuation, so these will never match: "
            "train with --tokenize-raw (the default for --style plain).",
            100 * share, ", ".join(repr(t) for t in examples),
        )


def read_tokens(path: Path, tokenizer: Tokenizer, tokenize_raw: bool = False) -> list[str]:
    """A corpus file as one token stream, read the tokenizer's level's way (see the module
    docstring)."""
    return tokenizer.read_corpus(path.read_text(encoding="utf-8"), tokenize_raw)


def count_words(path: Path) -> int:
    """Running words of a tokenized corpus file, one <eos> per line counted: what word-level
    perplexity divides by, whatever units a model reads the file in."""
    with open(path, encoding="utf-8") as handle:
        return sum(len(line.split()) + 1 for line in handle)


@dataclass
class Corpus:
    vocab: Vocabulary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    files: CorpusFiles
    train_counts: Counter[str] | None = None  # the training split's tokens before the vocabulary cut-off


def load_corpus(
    files: CorpusFiles,
    tokenizer: Tokenizer,
    max_vocab: int | None = None,
    min_count: int = 1,
    tokenize_raw: bool = False,
    vocab: Vocabulary | None = None,
) -> Corpus:
    """Token id tensors for each split; the vocabulary comes from train unless given."""
    train_tokens = read_tokens(files.train, tokenizer, tokenize_raw)
    if files.valid is None:
        if not 0 < files.valid_fraction < 1:
            raise ValueError("a single-file corpus needs 0 < valid_fraction < 1")
        cut = int(len(train_tokens) * (1 - files.valid_fraction))
        train_tokens, valid_tokens = train_tokens[:cut], train_tokens[cut:]
    else:
        valid_tokens = read_tokens(files.valid, tokenizer, tokenize_raw)
    counts = Counter(train_tokens)
    if vocab is None:
        if tokenizer.reads_tokenized_corpora:
            warn_if_untokenized(counts)
        vocab = Vocabulary.build(counts, max_size=max_vocab, min_count=min_count)

    def ids(tokens: list[str]) -> torch.Tensor:
        return torch.tensor(vocab.encode(tokens), dtype=torch.long)

    test = ids(read_tokens(files.test, tokenizer, tokenize_raw)) if files.test else None
    return Corpus(vocab, ids(train_tokens), ids(valid_tokens), test, files, counts)
