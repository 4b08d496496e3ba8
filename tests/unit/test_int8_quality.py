"""The quality gates of int8 serving (docs/quantization.md), held on the shipped word and
character models: the loss moves by less than the gates allow, no token's log-probability
moves far, and minimal-pair accuracy stays within a point. A broken quantization fails them."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import models.quantization as quantization
from models.registry import load_model
from tests.conftest import SHIPPED_MODELS
from training.evaluate_lm import precision_gap
from training.evaluate_pairs import evaluate, read_pairs

pytestmark = pytest.mark.skipif(not quantization.int8_available(), reason="this PyTorch build has no fbgemm int8 kernels")

PAIRS = read_pairs(Path(__file__).resolve().parents[1] / "data" / "minimal_pairs.jsonl")
SHAKESPEARE = """HAMLET:
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. To die, to sleep;
To sleep: perchance to dream: ay, there's the rub;
For in that sleep of death what dreams may come
When we have shuffled off this mortal coil,
Must give us pause.
"""
# The gates: word perplexity within +1%, characters within +0.01 nats, minimal pairs within one
# point; and a bound on any single token's |Δ log p| that catches a product that overflows.
WORD_PERPLEXITY_RATIO = 1.01
CHAR_LOSS_NATS = 0.01
PAIRS_POINTS = 0.01
MAX_TOKEN_DIFFERENCE = 1.0
MEAN_TOKEN_DIFFERENCE = 0.05


def gap(model_id: str, text: str) -> dict:
    fp32 = load_model(SHIPPED_MODELS / model_id)
    int8 = load_model(SHIPPED_MODELS / model_id, "cpu", "int8")
    ids = torch.tensor(fp32.encode_text(text, add_start=True).ids)
    return precision_gap(fp32.stream_token_logprobs(ids), int8.stream_token_logprobs(ids), "fp32")


def word_text() -> str:
    return " ".join(f"{pair['sentence_good']} {pair['sentence_bad']}" for pair in PAIRS)


def within_gates(result: dict, loss_gate: float) -> bool:
    return (result["loss_difference_nats"] <= loss_gate and result["abs_logprob_difference_max"] <= MAX_TOKEN_DIFFERENCE
            and result["abs_logprob_difference_mean"] <= MEAN_TOKEN_DIFFERENCE)


def test_the_word_model_in_int8_keeps_its_perplexity():
    result = gap("wikitext2-lstm", word_text())
    assert result["tokens"] > 800
    assert within_gates(result, math.log(WORD_PERPLEXITY_RATIO)), result


def test_the_character_model_in_int8_keeps_its_loss():
    result = gap("shakespeare-char-lstm", SHAKESPEARE)
    assert result["tokens"] > 500
    assert within_gates(result, CHAR_LOSS_NATS), result


def test_minimal_pair_accuracy_stays_within_a_point():
    fp32 = evaluate(load_model(SHIPPED_MODELS / "wikitext2-lstm"), PAIRS)
    int8 = evaluate(load_model(SHIPPED_MODELS / "wikitext2-lstm", "cpu", "int8"), PAIRS)
    assert int8["precision"] == "int8" and abs(int8["accuracy"] - fp32["accuracy"]) <= PAIRS_POINTS + 1e-9


def test_the_gates_catch_a_quantization_too_coarse(monkeypatch):
    monkeypatch.setattr(quantization, "WEIGHT_LEVELS", 3)  # 2-bit weights
    assert not within_gates(gap("shakespeare-char-lstm", SHAKESPEARE), CHAR_LOSS_NATS)


def test_the_gap_is_measured_in_natural_log():
    reference, measured = np.log(np.array([0.5, 0.25])), np.log(np.array([0.25, 0.25]))
    result = precision_gap(reference, measured, "fp32")
    assert result["loss_difference_nats"] == pytest.approx(math.log(2) / 2, abs=1e-5)
    assert result["abs_logprob_difference_max"] == pytest.approx(math.log(2), abs=1e-5)
    assert result["perplexity_ratio"] == pytest.approx(math.sqrt(2), abs=1e-4)
