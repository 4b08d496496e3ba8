"""Vocabulary: tokens in id order with named special tokens, saved as JSON."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = {"pad": PAD, "unk": UNK, "bos": BOS, "eos": EOS}


@dataclass
class Vocabulary:
    """Bidirectional token <-> id map. Specials always exist and come first."""

    tokens: list[str]
    specials: dict[str, str] = field(default_factory=lambda: dict(SPECIAL_TOKENS))

    def __post_init__(self) -> None:
        self._ids = {token: index for index, token in enumerate(self.tokens)}
        if len(self._ids) != len(self.tokens):
            raise ValueError("vocabulary has duplicate tokens")
        for name, token in self.specials.items():
            if token not in self._ids:
                raise ValueError(f"special token {name}={token!r} missing from vocabulary")

    @classmethod
    def build(
        cls,
        counts: Counter[str] | Iterable[str],
        max_size: int | None = None,
        min_count: int = 1,
    ) -> "Vocabulary":
        """Most frequent tokens (ties broken alphabetically, so builds are reproducible)."""
        if not isinstance(counts, Counter):
            counts = Counter(counts)
        specials = list(SPECIAL_TOKENS.values())
        ranked = sorted(
            (item for item in counts.items() if item[1] >= min_count and item[0] not in specials),
            key=lambda item: (-item[1], item[0]),
        )
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(specials))]
        return cls(specials + [token for token, _ in ranked])

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def id(self, token: str) -> int:
        """Id of `token`, or of `<unk>` when unknown."""
        return self._ids.get(token, self.unk_id)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.id(token) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[index] for index in ids]

    @property
    def pad_id(self) -> int:
        return self._ids[self.specials["pad"]]

    @property
    def unk_id(self) -> int:
        return self._ids[self.specials["unk"]]

    @property
    def bos_id(self) -> int:
        return self._ids[self.specials["bos"]]

    @property
    def eos_id(self) -> int:
        return self._ids[self.specials["eos"]]

    def to_json(self) -> dict:
        return {"specials": self.specials, "tokens": self.tokens}

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        tokens = data["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError("vocab.json: 'tokens' must be a list of strings")
        return cls(list(tokens), dict(data.get("specials", SPECIAL_TOKENS)))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
