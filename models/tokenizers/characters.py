"""Character level: every character, newlines included, is a token."""
from __future__ import annotations

from models.tokenizers.base import Tokenizer


class CharTokenizer(Tokenizer):
    level = "char"
    boundary_token = "\n"
    loss_unit = "nats per character"
    passages_follow_blank_lines = True

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def read_corpus(self, text: str, tokenize_raw: bool = False) -> list[str]:
        return list(text)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)

    def plain_boundary(self, left: str, right: str) -> bool:
        return True

    def join_continuation(self, window: list[str], tokens: list[str], before: str | None = None) -> str:
        return "".join(tokens)

    def detokenize_continuation(self, context: list[str], tokens: list[str]) -> str:
        return "".join(tokens)
