"""Confidence metrics of the rescoring tuner (training.rescoring_metrics)."""
import math

import pytest

from training.rescoring_metrics import CLIP, correct_words, filtered_wer, normalised_cross_entropy


def test_a_word_is_correct_when_aligned_to_an_equal_reference_word():
    assert correct_words("the cat sat on mat".split(), "the cat sat on the mat".split()) == [True] * 5
    assert correct_words("a cat sad".split(), "the cat sat".split()) == [False, True, False]
    assert correct_words([], "the cat".split()) == []
    assert correct_words("x y".split(), []) == [False, False]


def test_nce_of_perfect_constant_and_confidently_wrong_confidences():
    correct = [True, True, True, False]
    assert normalised_cross_entropy([1.0, 1.0, 1.0, 0.0], correct) == pytest.approx(1.0, abs=1e-5)
    assert normalised_cross_entropy([0.75] * 4, correct) == pytest.approx(0.0, abs=1e-12)
    base = -(3 * math.log(0.75) + math.log(0.25))
    wrong = -3 * math.log(CLIP) - math.log(CLIP)
    assert normalised_cross_entropy([0.0, 0.0, 0.0, 1.0], correct) == pytest.approx((base - wrong) / base)
    assert normalised_cross_entropy([0.5, 0.5], [True, True]) is None
    assert normalised_cross_entropy([], []) is None


def test_filtering_on_confidence_turns_dropped_words_into_deletions():
    references = ["the cat sat", "a dog"]
    chosen = [["the", "hat", "sat"], ["a", "dog", "barked"]]
    confidences = [[0.9, 0.2, 0.8], [0.95, 0.6, 0.1]]
    assert filtered_wer(references, chosen, confidences, 0.0) == (pytest.approx(2 / 5), 1.0)
    # Dropping "hat" (substitution -> deletion) and "barked" (insertion -> nothing): 1 error.
    assert filtered_wer(references, chosen, confidences, 0.5) == (pytest.approx(1 / 5), pytest.approx(4 / 6))
    wer, kept = filtered_wer(references, chosen, confidences, 1.0)
    assert wer == pytest.approx(1.0) and kept == 0.0
