"""Word level, through NLTK: Punkt sentence splitting when its data is installed
(``NLTK_DATA``), a regular-expression splitter otherwise, then NLTK's Treebank-style word
tokenizer. A ``style`` adapts the tokens to the corpus:

* ``wikitext``: WikiText-2 writes ``game 's``, ``don 't``, ``1 @,@ 000``, ``3 @.@ 5``,
  ``state @-@ of`` and plain ``"`` quotes; case is kept.
* ``ptb``: Mikolov's Penn Treebank: lower case, numbers become ``N``, no punctuation, and one
  sentence per line (sentences are separated by ``<eos>``).
* ``caption``: image captions: lower case, punctuation dropped.
* ``plain``: Treebank tokens as NLTK gives them.
"""
from __future__ import annotations

import logging
import os
import re
from functools import lru_cache
from pathlib import Path

from nltk.tokenize import NLTKWordTokenizer
from nltk.tokenize.treebank import TreebankWordDetokenizer

from models.tokenizers.base import QUOTE, Tokenizer, TokenizerConfig, split_lines
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
# A joiner with the spaces beside it: it glues the tokens on both sides, so it also sheds the
# space on the side where a line (a prompt that ends "state @-@") stops short of a token.
_JOINER = re.compile(r" ?(@[-,.]@) ?")


NLTK_DATA_VARIABLE = "RNNSERVE_NLTK_DATA"


def nltk_data_candidates() -> list[Path]:
    """Where NLTK's Punkt tables are looked for beyond NLTK's own search path (which honours
    NLTK_DATA): the RNNSERVE_NLTK_DATA setting, then the project's data folder beside the
    checkout (shared/data/nltk_data). Training, evaluation and serving all look here, so they
    split sentences alike."""
    candidates = [Path(os.environ[NLTK_DATA_VARIABLE])] if os.environ.get(NLTK_DATA_VARIABLE) else []
    checkout = Path(__file__).resolve().parents[2]
    # What `python -m training.data fetch nltk_punkt` unpacks, then the data folder beside the checkout.
    candidates += [checkout / "data" / "nltk_data", checkout.parent / "shared" / "data" / "nltk_data"]
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


class MissingSentenceSplitter(RuntimeError):
    """A model trained with Punkt sentence splitting, loaded where Punkt's data is missing: it
    would split request text unlike its training text."""


class WordTokenizer(Tokenizer):
    level = "word"
    spells_unknown_words = True
    reads_tokenized_corpora = True

    def __init__(self, config: TokenizerConfig, directory: Path | None = None) -> None:
        super().__init__(config, directory)
        if config.sentence_splitter == "punkt" and not _punkt_available():
            raise MissingSentenceSplitter(
                "this model was trained with NLTK's Punkt sentence splitter, whose data (punkt_tab) is not installed "
                "here: run `python -m training.data fetch nltk_punkt` (or set RNNSERVE_NLTK_DATA to a directory holding "
                "tokenizers/punkt_tab)")

    @classmethod
    def sentence_splitter_in_use(cls) -> str | None:
        return "punkt" if _punkt_available() else "regex"

    def tokenize(self, text: str) -> list[str]:
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
        return "\n".join(_detokenize_line(line) for line in split_lines(tokens))

    def surface(self, token: str) -> str:
        return _WIKITEXT_JOINERS.get(token) or super().surface(token)


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
    return _JOINER.sub(lambda match: _WIKITEXT_JOINERS[match.group(1)], text)
