"""Text <-> tokens, matching the conventions of the corpus a model was trained on.

Word level uses NLTK: Punkt sentence splitting when its data is installed (``NLTK_DATA``),
a regular-expression splitter otherwise, then NLTK's Treebank-style word tokenizer. A
``style`` adapts the tokens to the corpus:

* ``wikitext``: WikiText-2 writes ``game 's``, ``don 't``, ``1 @,@ 000``, ``3 @.@ 5``,
  ``state @-@ of`` and plain ``"`` quotes; case is kept.
* ``ptb``: Mikolov's Penn Treebank: lower case, numbers become ``N``, no punctuation, and one
  sentence per line (sentences are separated by ``<eos>``).
* ``caption``: image captions: lower case, punctuation dropped.
* ``plain``: Treebank tokens as NLTK gives them.

Character level maps every character (newlines included) to a token.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.treebank import TreebankWordDetokenizer

from models.vocab import EOS

logger = logging.getLogger(__name__)

_NUMBER = re.compile(r"\d[\d,.]*\d")
_NUMBER_PARTS = re.compile(r"([,.])")
_HYPHENATED = re.compile(r"\w-\w")
_PTB_NUMBER = re.compile(r"^[+-]?\d[\d,.:/]*%?$")
_PUNCTUATION = re.compile(r"^[^\w<>]+$")
# Fallback sentence splitter: end punctuation followed by whitespace and an upper-case letter.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_WIKITEXT_JOINERS = {"@-@": "-", "@,@": ",", "@.@": "."}


@dataclass(frozen=True)
class TokenizerConfig:
    """How a model's text is tokenized; stored in its config.json."""

    level: Literal["word", "char"] = "word"
    style: Literal["wikitext", "ptb", "caption", "plain"] = "wikitext"
    # The token a text is taken to follow (models trained on a stream of lines see every line
    # begin after the previous line's end token).
    start_token: str = EOS
    # The token that ends a text when scoring asks for it.
    end_token: str = EOS

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TokenizerConfig":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


NLTK_DATA_VARIABLE = "RNNSERVE_NLTK_DATA"


def nltk_data_candidates() -> list[Path]:
    """Where NLTK's Punkt tables are looked for beyond NLTK's own search path (which honours
    NLTK_DATA): the RNNSERVE_NLTK_DATA setting, then the project's data folder beside the
    checkout (shared/data/nltk_data). Training, evaluation and serving all look here, so they
    split sentences alike."""
    candidates = [Path(os.environ[NLTK_DATA_VARIABLE])] if os.environ.get(NLTK_DATA_VARIABLE) else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / "nltk_data")
    return candidates


def use_nltk_data(path: str | Path | None) -> None:
    """Make `path` the first place Punkt is looked for, in this process and the worker processes
    it starts."""
    if path:
        os.environ[NLTK_DATA_VARIABLE] = str(path)
        _punkt_available.cache_clear()


@lru_cache(maxsize=1)
def _punkt_available() -> bool:
    import nltk

    for candidate in reversed(nltk_data_candidates()):
        if candidate.is_dir() and str(candidate) not in nltk.data.path:
            nltk.data.path.insert(0, str(candidate))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return True
    except LookupError:
        logger.warning("NLTK punkt data not found (set NLTK_DATA or RNNSERVE_NLTK_DATA); using a regex sentence splitter")
        return False


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` (Punkt when available, a regular expression otherwise)."""
    if _punkt_available():
        from nltk.tokenize import sent_tokenize

        return sent_tokenize(text)
    return [part for part in _SENTENCE_END.split(text) if part.strip()]


_word_tokenizer = NLTKWordTokenizer()
_detokenizer = TreebankWordDetokenizer()


def _wikitext_token(token: str) -> list[str]:
    if _NUMBER.fullmatch(token):
        return [f"@{part}@" if part in ",." else part for part in _NUMBER_PARTS.split(token) if part]
    if _HYPHENATED.search(token) and not token.startswith("-"):
        pieces: list[str] = []
        for index, part in enumerate(token.split("-")):
            if index:
                pieces.append("@-@")
            if part:
                pieces.append(part)
        return pieces
    return [token]


def _to_wikitext(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        if token in ("``", "''"):
            out.append('"')
        elif token.lower() == "n't" and out:
            # Treebank gives "do n't"; WikiText writes "don 't".
            out[-1] += token[0]
            out.append(token[1:])
        else:
            out.extend(_wikitext_token(token))
    return out


def _to_ptb(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        token = token.lower()
        if _PTB_NUMBER.match(token):
            out.append("N")
        elif not _PUNCTUATION.match(token) or token in ("'s", "'re", "'ve", "'m", "'ll", "'d", "n't"):
            out.append(token)
    return out


class Tokenizer:
    """Turns raw text into a model's tokens and generated tokens back into text."""

    def __init__(self, config: TokenizerConfig) -> None:
        self.config = config

    def tokenize(self, text: str) -> list[str]:
        if self.config.level == "char":
            return list(text)
        tokens: list[str] = []
        for index, sentence in enumerate(split_sentences(text)):
            words = _word_tokenizer.tokenize(sentence)
            if self.config.style == "wikitext":
                words = _to_wikitext(words)
            elif self.config.style == "caption":
                words = [w.lower() for w in words if not _PUNCTUATION.match(w)]
            elif self.config.style == "ptb":
                words = _to_ptb(words)
                if index and tokens:
                    tokens.append(EOS)
            tokens.extend(words)
        return tokens

    def detokenize(self, tokens: list[str]) -> str:
        if self.config.level == "char":
            return "".join(tokens)
        lines: list[list[str]] = [[]]
        for token in tokens:
            if token == EOS:
                lines.append([])
            else:
                lines[-1].append(token)
        return "\n".join(_detokenize_line(line) for line in lines)


    def detokenize_continuation(self, context: list[str], tokens: list[str]) -> str:
        """The text `tokens` add after `context`, separator included, so that a client that
        appends it to the prompt reads what detokenizing the whole would give: "released in"
        + " the United States", "he" + " didn't" (not "he" + " did" + " n't")."""
        if self.config.level == "char":
            return "".join(tokens)
        # Only the context's current line affects how the continuation joins (quotes open on
        # it, the word before); a bounded tail keeps this cheap.
        line = current_line(context)
        return self.join_continuation(context_window(line[-CONTEXT_TOKENS:], line[:-CONTEXT_TOKENS].count(QUOTE)), tokens)

    def join_continuation(self, window: list[str], tokens: list[str], before: str | None = None) -> str:
        """`detokenize_continuation` after a context already cut to its window (`context_window`);
        `before` is the window's own text when the caller has it already."""
        if self.config.level == "char":
            return "".join(tokens)
        if not window:
            return self.detokenize(tokens)
        before = self.detokenize(window) if before is None else before
        whole = self.detokenize(window + tokens)
        if whole.startswith(before):
            return whole[len(before):]
        # Detokenizing rewrote the end of the context (a contraction split across the two):
        # give the continuation on its own, separated by a space.
        text = self.detokenize(tokens)
        return (" " + text) if text and not text.startswith((" ", "\n")) else text


def current_line(context: list[str]) -> list[str]:
    """The tokens after the context's last end-of-line token."""
    line_start = max((i + 1 for i, token in enumerate(context) if token == EOS), default=0)
    return context[line_start:]


def context_window(tail: list[str], dropped_quotes: int) -> list[str]:
    """What of a line decides how a continuation joins it: its last tokens `tail`, led by a
    quote when the `dropped_quotes` before them leave one open, so that quotes further on still
    open and close as in the whole line."""
    return ([QUOTE] if dropped_quotes % 2 else []) + tail


# Context tokens read when joining a continuation to its prompt.
CONTEXT_TOKENS = 64
QUOTE = '"'


def _detokenize_line(tokens: list[str]) -> str:
    if not tokens:
        return ""
    # Treebank's detokenizer knows `` and '' as opening and closing quotes.
    words: list[str] = []
    open_quote = False
    for token in tokens:
        if token == QUOTE:
            words.append("''" if open_quote else "``")
            open_quote = not open_quote
        elif token.lower() == "'t" and words and words[-1].lower().endswith("n"):
            words[-1], token = words[-1][:-1], words[-1][-1] + "'t"
            words.append(token)
        else:
            words.append(token)
    text = _detokenizer.detokenize(words)
    for marker, joiner in _WIKITEXT_JOINERS.items():
        text = text.replace(f" {marker} ", joiner).replace(marker, joiner)
    return text
