"""Estimating a model's spelling model (`models.spelling`): which words it learns from, and the
character Kneser-Ney n-gram itself.

It should know how the words the language model calls `<unk>` are spelled. When the corpus has
them — the spellings the vocabulary cut-off mapped to `<unk>` — it learns from those word types.
When it has none (WikiText-2 and PTB replaced their rare words by `<unk>` already), it learns
from the vocabulary's own rarer half, which resembles unknown words most (names, long and
technical words) more than the frequent function words do. Each word type counts once.
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from pathlib import Path

import numpy as np

from models.artifacts import CONFIG_FILE, model_revision, write_config
from models.spelling import BOUNDARY_ID, SPELLING_FILE, UNKNOWN_CHARACTER_ID, SpellingModel
from models.vocab import SPECIAL_TOKENS, Vocabulary
from training.kneser_ney import estimate

logger = logging.getLogger(__name__)

DEFAULT_ORDER = 5
# Fewer cut-off word types than this is too little to learn spellings from.
MIN_CUT_OFF_TYPES = 500
HELDOUT_FRACTION = 0.1
# Tokens that are markup, not words (WikiText's joiners).
NOT_WORDS = {"@-@", "@,@", "@.@"}


def spelling_words(vocab: Vocabulary, train_counts: Counter[str] | None) -> tuple[list[str], str]:
    """(word types to learn spellings from, where they came from)."""
    specials = set(SPECIAL_TOKENS.values()) | set(vocab.specials.values()) | NOT_WORDS
    if train_counts:
        cut_off = sorted(word for word in train_counts if word not in vocab and word not in specials)
        if len(cut_off) >= MIN_CUT_OFF_TYPES:
            return cut_off, "cut_off_spellings"
    words = [token for token in vocab.tokens if token not in specials and token.strip()]
    if train_counts:
        words.sort(key=lambda word: (train_counts.get(word, 0), word))
    else:
        words.reverse()  # a vocabulary lists its tokens from the most frequent down
    return sorted(words[: max(1, len(words) // 2)]), "rare_vocabulary_types"


def _stream(words: list[str], alphabet: dict[str, int]) -> np.ndarray:
    ids = [BOUNDARY_ID]
    for word in words:
        ids.extend(alphabet.get(c, UNKNOWN_CHARACTER_ID) for c in word)
        ids.append(BOUNDARY_ID)
    return np.asarray(ids, dtype=np.int64)


def supported_order(words: list[str], order: int) -> int:
    """The highest character n-gram order, up to `order`, that these spellings support; 0 when
    there are none. No n-gram is longer than a whole spelling with its two boundaries (a longer
    one would only join neighbouring words of the training stream, which scoring never sees),
    and the estimator needs one more character in its stream than the order."""
    words = set(words)  # each type counts once, as in estimate_spelling
    if not words:
        return 0
    stream_length = sum(len(word) + 1 for word in words) + 1
    return max(0, min(order, max(len(word) for word in words) + 2, stream_length - 1))


def estimate_spelling(words: list[str], order: int = DEFAULT_ORDER, source: str = "", seed: int = 0) -> SpellingModel:
    """A Kneser-Ney character n-gram over the spellings; its held-out loss (a tenth of the
    types, then the whole set is used) goes into its info. `order` must be one the words
    support (`supported_order`)."""
    words = sorted(set(words))
    if not 1 <= order <= supported_order(words, order):
        raise ValueError(f"a spelling model of order {order} needs more than these {len(words)} word types")
    random.Random(seed).shuffle(words)
    characters = sorted({c for word in words for c in word})
    alphabet = {c: i + 2 for i, c in enumerate(characters)}
    vocab_size = len(characters) + 2
    held = max(1, int(len(words) * HELDOUT_FRACTION)) if len(words) >= 20 else 0
    info = {"source": source, "order": order, "word_types": len(words), "characters": len(characters)}
    if held:
        heldout, train = words[:held], words[held:]
        # The held-out probe's own order: its shorter training list may support less.
        model, _ = estimate(_stream(train, alphabet), vocab_size, supported_order(train, order))
        probe = SpellingModel(characters, model, {})
        total = sum(probe.logprob(word) for word in heldout)
        info["heldout_nats_per_character"] = round(-total / sum(len(w) + 1 for w in heldout), 4)
        info["heldout_nats_per_word"] = round(-total / len(heldout), 3)
    model, _ = estimate(_stream(words, alphabet), vocab_size, order)
    return SpellingModel(characters, model, info)


def attach_spelling(directory: Path, vocab: Vocabulary, train_counts: Counter[str] | None, order: int = DEFAULT_ORDER) -> dict:
    """Estimate a word model's spelling model, store it in its directory and say so in its
    config.json. Returns the spelling model's info.

    A small vocabulary gets the order its spellings support (`supported_order`), or no
    spelling model when it has no words to learn from; config.json's "spelling" then records
    the order used (0: none) beside the `requested_order`."""
    words, source = spelling_words(vocab, train_counts)
    used = supported_order(words, order)
    if used == 0:
        (directory / SPELLING_FILE).unlink(missing_ok=True)  # one this replaces would contradict config.json
        info = {"source": source, "order": 0, "requested_order": order, "word_types": len(words)}
        logger.warning("no spelling model: no word types to learn spellings from (%s); an unknown word costs its <unk> alone", source)
    else:
        spelling = estimate_spelling(words, used, source)
        info = spelling.info
        if used < order:
            info["requested_order"] = order
            logger.warning("spelling model of order %d, not %d: the most its spellings support (word types: %d, from %s; "
                           "the longest has %d characters)", used, order, len(words), source, max(len(word) for word in words))
        spelling.save(directory)
    config_path = directory / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["spelling"] = info
    write_config(directory, config)
    logger.info("spelling model: %s (model revision %s)", info, model_revision(directory)[:12])
    return info
