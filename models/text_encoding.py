"""Turning request text into model ids, and scores back into per-token results, shared by
every model type that reads words or characters through a tokenizer and a vocabulary (the
recurrent LMs and the n-gram models)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from models.scoring import SequenceScore, summarise
from models.spelling import SpellingModel
from models.streams import EVAL_BATCH_SIZE, EVAL_BPTT
from models.tokenizers import Tokenizer, text_start
from models.vocab import Vocabulary

# How a word outside the vocabulary is scored: "spell" charges log p(<unk> | context) plus the
# spelling model's log p(word); "unk" charges the <unk> token alone.
UnknownWords = Literal["spell", "unk"]


@dataclass
class EncodedText:
    """Model input: `ids` begins with `context` ids that are history only (the model's start
    context, and any preceding text); `tokens` are the text's own tokens. Without a start
    context (context 0) the first token is history."""

    ids: list[int]
    tokens: list[str]
    oov: list[bool]
    context: int

    @property
    def scored_tokens(self) -> list[str]:
        return self.tokens[max(0, 1 - self.context):]

    @property
    def scored_oov(self) -> list[bool]:
        return self.oov[max(0, 1 - self.context):]


@dataclass
class TextScore:
    """A text's score: one log-probability per scored token (natural log)."""

    tokens: list[str]
    oov: list[bool]
    score: SequenceScore
    unknown_words: str  # how unknown words were scored: "spell" or "unk"
    # Per scored token, when asked for: the model's likeliest tokens at its position, best
    # first (the vocabulary's distribution: an unknown word's alternatives include <unk>).
    top_logprobs: list[dict[str, float]] | None = None

    @property
    def num_unknown(self) -> int:
        return sum(self.oov)


class TextEncoding:
    """Mixin for loaded models with `vocab: Vocabulary`, `tokenizer: Tokenizer`, a
    `score(sequences)` method, their own way of scoring a token stream (`stream_loss`,
    `stream_token_logprobs`) and, for word models, perhaps a spelling model."""

    vocab: Vocabulary
    tokenizer: Tokenizer
    spelling: SpellingModel | None

    def score(self, sequences: list[list[int]]) -> list[SequenceScore]:
        """Models that can give each position's likeliest tokens also take `top_logprobs`."""
        raise NotImplementedError

    def stream_loss(self, ids: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE, bptt: int = EVAL_BPTT,
                    device: torch.device | str = "cpu") -> float:
        """Mean negative log-likelihood in nats per predicted token of a token stream (N,) read
        the standard way (`models.streams`): the first token is context only."""
        raise NotImplementedError

    def stream_token_logprobs(self, ids: torch.Tensor, bptt: int = EVAL_BPTT,
                              device: torch.device | str = "cpu") -> np.ndarray:
        """log p of every token of the stream after the first (natural log), read as
        `stream_loss` reads it with batch size 1: what per-token interpolation mixes."""
        raise NotImplementedError

    def score_encoded(self, encoded: list[EncodedText], unknown_words: UnknownWords | list[UnknownWords] = "spell",
                      top_logprobs: int = 0) -> list[TextScore]:
        """Score encoded texts (one mode for all, or one per text); with "spell" (and a spelling
        model) an unknown word costs log p(<unk> | context) + log p_spell(word), so scores are
        over all strings. `top_logprobs` also gives each scored token that many likeliest
        tokens at its position, from the same pass."""
        modes = [unknown_words] * len(encoded) if isinstance(unknown_words, str) else list(unknown_words)
        can_spell = self.spelling is not None and self.tokenizer.spells_unknown_words
        sequences = [e.ids for e in encoded]
        scores = self.score(sequences, top_logprobs) if top_logprobs else self.score(sequences)
        results = []
        for item, score, mode in zip(encoded, scores, modes):
            tokens, oov = item.scored_tokens, item.scored_oov
            history = len(score.token_logprobs) - len(tokens)
            logprobs = score.token_logprobs[history:]  # drop the history's
            spell = mode == "spell" and can_spell
            if spell:
                logprobs = [lp + self.spelling.logprob(token) if unknown else lp for lp, token, unknown in zip(logprobs, tokens, oov)]
            alternatives = None
            if score.top_logprobs is not None:
                alternatives = [{self.vocab.tokens[token_id]: value for token_id, value in position}
                                for position in score.top_logprobs[history:]]
            results.append(TextScore(tokens, oov, summarise(list(logprobs)), "spell" if spell else "unk", alternatives))
        return results

    @property
    def level(self) -> str:
        return self.tokenizer.config.level

    def encode_text(self, text: str, add_start: bool = True, add_end: bool = False, context: str | None = None) -> EncodedText:
        """Raw text -> ids through the model's tokenizer. `context` is text that came before (a
        conversation's previous turn): read into the model's state as history, ended by the end
        token, not scored."""
        encoded = self.encode_tokens(self.tokenizer.tokenize(text), add_start, add_end)
        if context:
            history = self.vocab.encode(self.tokenizer.tokenize(context) + [self.tokenizer.config.end_token])
            encoded.ids = encoded.ids[: encoded.context] + history + encoded.ids[encoded.context :]
            encoded.context += len(history)
        return encoded

    def encode_tokens(self, tokens: list[str], add_start: bool = True, add_end: bool = False) -> EncodedText:
        """Pre-split tokens -> ids; unknown tokens become <unk> and are flagged."""
        config = self.tokenizer.config
        tokens = list(tokens) + ([config.end_token] if add_end else [])
        ids = self.vocab.encode(tokens)
        oov = [token not in self.vocab for token in tokens]
        context = self.start_ids() if add_start else []
        return EncodedText(context + ids, tokens, oov, len(context))

    def start_ids(self) -> list[int]:
        """The ids every text is read after (scored, rescored, echoed or continued): the context
        the model was trained to start a text from (`models.tokenizers.text_start`)."""
        return self.vocab.encode(text_start(self.tokenizer.config, self.vocab))
