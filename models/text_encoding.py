"""Turning request text into model ids, shared by every model type that reads words or
characters through a tokenizer and a vocabulary (the recurrent LMs and the n-gram models)."""
from __future__ import annotations

from dataclasses import dataclass

from models.tokenizer import Tokenizer
from models.vocab import Vocabulary


@dataclass
class EncodedText:
    """Model input: `ids` begins with `context` start ids that are not themselves scored."""

    ids: list[int]
    tokens: list[str]
    oov: list[bool]
    context: int


class TextEncoding:
    """Mixin for loaded models with `vocab: Vocabulary` and `tokenizer: Tokenizer`."""

    vocab: Vocabulary
    tokenizer: Tokenizer

    @property
    def level(self) -> str:
        return self.tokenizer.config.level

    def encode_text(self, text: str, add_start: bool = True, add_end: bool = False) -> EncodedText:
        """Raw text -> ids through the model's tokenizer."""
        return self.encode_tokens(self.tokenizer.tokenize(text), add_start, add_end)

    def encode_tokens(self, tokens: list[str], add_start: bool = True, add_end: bool = False) -> EncodedText:
        """Pre-split tokens -> ids; unknown tokens become <unk> and are flagged."""
        config = self.tokenizer.config
        tokens = list(tokens) + ([config.end_token] if add_end else [])
        ids = self.vocab.encode(tokens)
        oov = [token not in self.vocab for token in tokens]
        context = [self.vocab.id(config.start_token)] if add_start else []
        return EncodedText(context + ids, tokens, oov, len(context))
