"""What every tokenizer is: text <-> a model's tokens, and the conventions the generation
loop relies on to join a continuation to its prompt and to stream text in linear time."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Literal

from models.vocab import EOS, Vocabulary

# Context tokens read when joining a continuation to its prompt.
CONTEXT_TOKENS = 64
QUOTE = '"'


@dataclass(frozen=True)
class TokenizerConfig:
    """How a model's text is tokenized; stored in its config.json."""

    level: str = "word"  # a level of the registry, models.tokenizers.TOKENIZERS
    style: Literal["wikitext", "ptb", "caption", "plain"] = "wikitext"
    # The token a text is taken to follow (models trained on a stream of lines see every line
    # begin after the previous line's end token).
    start_token: str = EOS
    # The token that ends a text when scoring asks for it.
    end_token: str = EOS
    # A file in the model directory the tokenizer needs (SentencePiece's piece model).
    model_file: str | None = None
    # The tokens every text is read after: what preceded a new text in the training stream (a
    # blank line before a new speech of a play, for a character model). None: see `text_start`.
    start_context: tuple[str, ...] | None = None
    # The sentence splitter the model was trained with ("punkt" or "regex"; word level): the
    # model serves only where the same splitter is available. None: not recorded.
    sentence_splitter: str | None = None
    # The text normalisation the training text was put through (models.text_normalization:
    # "recogniser" is lower case, no punctuation, numbers spelled out); rescoring puts
    # hypotheses in the same form before the model scores them. None: the text as written.
    text_normalization: str | None = None

    def __post_init__(self) -> None:
        if self.start_context is not None:
            # config.json holds a list; a tuple keeps the config hashable like its other fields.
            object.__setattr__(self, "start_context", tuple(self.start_context))

    def to_json(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, data: dict) -> "TokenizerConfig":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


class Tokenizer(ABC):
    """Turns raw text into a model's tokens and generated tokens back into text. What else is
    known of a level is a class attribute here, read through the registry
    (`models.tokenizers.TOKENIZERS`)."""

    level: ClassVar[str]
    # What ends a line of the level's training stream, so what a text starts after and ends with
    # (`training.corpus.lm_tokenizer_config`).
    boundary_token: ClassVar[str] = EOS
    # A file the tokenizer reads, learnt from the training text and shipped in the model
    # directory (None: it needs none).
    model_file_name: ClassVar[str | None] = None
    # What a loss (and so a perplexity) of this level is averaged over, for config.json's metrics.
    loss_unit: ClassVar[str] = "nats per token, one <eos> per line counted"
    # Whether perplexity is also given per word (whitespace-separated, one <eos> per line): a
    # level whose units per word vary with the text compares with word models only that way.
    reports_word_perplexity: ClassVar[bool] = False
    # Whether a spelling model scores its unknown tokens: only a closed vocabulary of words has
    # tokens that text can miss (characters and pieces spell any text themselves).
    spells_unknown_words: ClassVar[bool] = False
    # Whether the level's corpora usually come tokenized already (WikiText-2, PTB): read by their
    # whitespace unless asked to tokenize raw text, and checked for text that looks untokenized.
    reads_tokenized_corpora: ClassVar[bool] = False
    # Whether a blank line (two boundary tokens) starts a passage of the training stream (a
    # play's speech), so that texts are read after one (`models.tokenizers.text_start`).
    passages_follow_blank_lines: ClassVar[bool] = False

    def __init__(self, config: TokenizerConfig, directory: Path | None = None) -> None:
        self.config = config

    @classmethod
    def sentence_splitter_in_use(cls) -> str | None:
        """The sentence splitter this level would split raw text with here (None: it splits none)."""
        return None

    @abstractmethod
    def tokenize(self, text: str) -> list[str]:
        ...

    @abstractmethod
    def detokenize(self, tokens: list[str]) -> str:
        ...

    def read_corpus(self, text: str, tokenize_raw: bool = False) -> list[str]:
        """A corpus file's text as one token stream, as training reads it: each line's tokens and
        <eos> after it. A level that `reads_tokenized_corpora` splits lines at whitespace unless
        `tokenize_raw`."""
        tokens: list[str] = []
        for line in text.splitlines():
            tokens.extend(self.tokenize(line) if tokenize_raw or not self.reads_tokenized_corpora else line.split())
            tokens.append(EOS)
        return tokens

    def corpus_vocabulary(self) -> Vocabulary | None:
        """The vocabulary the tokenizer fixes itself (a piece model's); None: the corpus's
        tokens decide it."""
        return None

    def plain_boundary(self, left: str, right: str) -> bool:
        """Whether text made of tokens up to `left` is final whatever follows `right`: the
        detokenizer joins the two sides with a fixed separator. The streaming text freezes
        there (see models.generation.CompletionTracker)."""
        return left.isalnum() and right.isalnum()

    def surface(self, token: str) -> str:
        """How `token` is likely spelled in the text it came from (to find its offset); empty
        for a token with no text of its own (the end of a line or text)."""
        return "" if token == EOS else token

    def detokenize_continuation(self, context: list[str], tokens: list[str]) -> str:
        """The text `tokens` add after `context`, separator included, so that a client that
        appends it to the prompt reads what detokenizing the whole would give: "released in"
        + " the United States", "he" + " didn't" (not "he" + " did" + " n't")."""
        # Only the context's current line affects how the continuation joins (quotes open on
        # it, the word before); a bounded tail keeps this cheap.
        line = current_line(context)
        return self.join_continuation(context_window(line[-CONTEXT_TOKENS:], line[:-CONTEXT_TOKENS].count(QUOTE)), tokens)

    def join_continuation(self, window: list[str], tokens: list[str], before: str | None = None) -> str:
        """`detokenize_continuation` after a context already cut to its window (`context_window`);
        `before` is the window's own text when the caller has it already."""
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

    def offsets(self, text: str, tokens: list[str]) -> list[int]:
        """Character offset in `text` of each of the tokens it was tokenized into: each token's
        surface form searched for in order (a token with none found keeps the last position)."""
        result, position = [], 0
        for token in tokens:
            surface = self.surface(token)
            found = text.find(surface, position) if surface else -1
            if found >= 0:
                position = found
            result.append(position)
            if found >= 0:
                position += len(surface)
        return result


def current_line(context: list[str]) -> list[str]:
    """The tokens after the context's last end-of-line token."""
    line_start = max((i + 1 for i, token in enumerate(context) if token == EOS), default=0)
    return context[line_start:]


def context_window(tail: list[str], dropped_quotes: int) -> list[str]:
    """What of a line decides how a continuation joins it: its last tokens `tail`, led by a
    quote when the `dropped_quotes` before them leave one open, so that quotes further on still
    open and close as in the whole line."""
    return ([QUOTE] if dropped_quotes % 2 else []) + tail


def split_lines(tokens: list[str]) -> list[list[str]]:
    """Tokens cut at end-of-line tokens (which are dropped)."""
    lines: list[list[str]] = [[]]
    for token in tokens:
        if token == EOS:
            lines.append([])
        else:
            lines[-1].append(token)
    return lines
