"""How words are spelled: a character n-gram model over word spellings with an end-of-word
symbol, so that it is a proper distribution over all strings.

A word model scores a word outside its vocabulary as `log p(<unk> | context) + log p_spell(word)`
(Mielke & Eisner, "Spell once, summon anywhere", 2019): the `<unk>` token's probability is
shared out among all the strings it stands for, so two sentences with different unknown words
stay comparable, and a real name costs less than a string of random letters.

p_spell(w) = p(c1 | #) p(c2 | # c1) ... p(# | ... cn), where # is the word boundary. A character
never seen in training is the model's unknown character, whose probability is shared evenly
among all the Unicode code points the model does not know. Stored as `spelling.safetensors`
in the model directory (tables as in `models.ngram`, the alphabet in the file's metadata).
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from models.ngram import NGramModel

SPELLING_FILE = "spelling.safetensors"
BOUNDARY_ID, UNKNOWN_CHARACTER_ID = 0, 1  # ids of the word boundary and of an unseen character
UNICODE_CODE_POINTS = 0x110000


class SpellingModel:
    def __init__(self, characters: list[str], ngram: NGramModel, info: dict[str, Any]) -> None:
        if ngram.vocab_size != len(characters) + 2:
            raise ValueError("the spelling model's alphabet does not match its tables")
        self.characters, self.ngram, self.info = characters, ngram, info
        self._ids = {character: index + 2 for index, character in enumerate(characters)}
        # An unseen character: the unknown character's probability, shared by every code point
        # outside the alphabet.
        self._unseen_character_cost = math.log(UNICODE_CODE_POINTS - len(characters))
        self.logprob = lru_cache(maxsize=65536)(self._logprob)

    def encode(self, word: str) -> list[int]:
        return [BOUNDARY_ID] + [self._ids.get(c, UNKNOWN_CHARACTER_ID) for c in word] + [BOUNDARY_ID]

    def _logprob(self, word: str) -> float:
        """Natural-log probability of the whole spelling, its end included."""
        ids = self.encode(word)
        unseen = sum(1 for i in ids[1:-1] if i == UNKNOWN_CHARACTER_ID)
        return float(self.ngram.token_logprobs(np.asarray(ids), context=1).sum()) - unseen * self._unseen_character_cost

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / SPELLING_FILE
        metadata = {"format": "rnnserve-spelling-ngram", "order": str(self.ngram.order),
                    "characters": json.dumps(self.characters, ensure_ascii=False), "info": json.dumps(self.info)}
        save_file(self.ngram.to_tensors(), str(path), metadata=metadata)
        path.chmod(0o644)
        return path


def load_spelling(directory: str | Path) -> SpellingModel | None:
    """The spelling model stored beside a model, or None when it has none."""
    path = Path(directory) / SPELLING_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != "rnnserve-spelling-ngram":
        raise ValueError(f"{path}: not a spelling model")
    characters = json.loads(metadata["characters"])
    if not isinstance(characters, list) or not all(isinstance(c, str) and len(c) == 1 for c in characters):
        raise ValueError(f"{path}: bad alphabet")
    ngram = NGramModel.from_tensors(load_file(str(path)), int(metadata["order"]), len(characters) + 2)
    return SpellingModel(characters, ngram, json.loads(metadata.get("info", "{}")))
