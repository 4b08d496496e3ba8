"""Posteriors, word confidences and MBR over an n-best list (models.confidence), and the named
scores and negative weights of the combined score (models.rescoring)."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.confidence import (
    align,
    decide,
    distances_between,
    expected_errors,
    mbr_choice,
    pairwise_distances,
    posteriors,
    word_confidences,
)
from models.rescoring import RescoringWeights, ScoreOverflow, combined_score, rescore_list
from tests.conftest import examples

finite = st.floats(allow_nan=False, allow_infinity=False)
scales = st.floats(min_value=5e-324, max_value=1e308, allow_nan=False, allow_infinity=False).filter(lambda s: s > 0)
words = st.lists(st.sampled_from(["a", "b", "c", "ä", "日本", "d"]), max_size=7)
lists = st.lists(words, min_size=1, max_size=6)


def edit_distance(a, b) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        above, row[0] = row[:], i
        for j, y in enumerate(b, 1):
            row[j] = min(above[j] + 1, row[j - 1] + 1, above[j - 1] + (x != y))
    return row[-1]


@given(st.lists(finite, min_size=1, max_size=30), scales)
def test_posteriors_are_a_distribution_for_any_finite_scores(scores, scale):
    result = posteriors(scores, scale)
    assert len(result) == len(scores) and all(math.isfinite(p) and 0 <= p <= 1 for p in result)
    assert math.fsum(result) == pytest.approx(1.0, abs=1e-12)
    best = max(range(len(scores)), key=lambda i: scores[i])
    assert result[best] == max(result)  # order kept


def test_posteriors_are_the_softmax_and_extremes_stay_finite():
    assert posteriors([0.0, math.log(3.0)]) == pytest.approx([0.25, 0.75])
    assert posteriors([-2.0, 0.0], 0.5) == pytest.approx([1 / (1 + math.e), math.e / (1 + math.e)])
    assert posteriors([1.7e308, -1.7e308, 1.7e308]) == [0.5, 0.0, 0.5]
    assert posteriors([-1e308, -1e308], 5e-324) == [0.5, 0.5]
    assert posteriors([]) == []
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            posteriors([1.0], bad)


@given(words, words)
def test_the_alignment_is_a_minimum_edit_distance_alignment(reference, hypothesis):
    pairs = align(reference, hypothesis)
    assert [i for i, _ in pairs if i is not None] == list(range(len(reference)))
    assert [j for _, j in pairs if j is not None] == list(range(len(hypothesis)))
    errors = sum(1 for i, j in pairs if i is None or j is None or reference[i] != hypothesis[j])
    assert errors == edit_distance(reference, hypothesis)


@settings(max_examples=examples(60))
@given(lists)
def test_pairwise_distances_are_edit_distances(word_lists):
    matrix = pairwise_distances(word_lists)
    for i, a in enumerate(word_lists):
        for j, b in enumerate(word_lists):
            assert matrix[i, j] == edit_distance(a, b)


def test_distances_in_chunks_and_empty_sequences(monkeypatch):
    monkeypatch.setattr("models.confidence.PAIRS_PER_CHUNK", 2)
    word_lists = [[], ["a"], ["a", "b", "c"], ["c", "b"], []]
    matrix = pairwise_distances(word_lists)
    assert matrix.tolist() == [[edit_distance(a, b) for b in word_lists] for a in word_lists]
    assert distances_between(word_lists, matrix[:0, 0], matrix[:0, 0]).tolist() == []


@given(lists, st.lists(st.floats(min_value=-50, max_value=50), min_size=6, max_size=6), scales)
def test_confidences_are_probabilities(word_lists, scores, scale):
    posterior = posteriors(scores[: len(word_lists)], scale)
    for chosen in range(len(word_lists)):
        confidences = word_confidences(chosen, word_lists, posterior)
        assert len(confidences) == len(word_lists[chosen])
        # The chosen hypothesis counts its own posterior (up to the float rounding of the sum).
        assert all(posterior[chosen] * (1 - 1e-12) <= c <= 1 for c in confidences)


@given(words, finite, scales)
def test_a_list_of_one_is_certain(only, score, scale):
    assert word_confidences(0, [only], posteriors([score], scale)) == [1.0] * len(only)
    assert decide([" ".join(only)], [score], [0], scale, "mbr").confidences == [1.0] * len(only)


def test_confidences_add_the_posteriors_of_agreeing_hypotheses():
    word_lists = [["the", "cat", "sat"], ["the", "hat", "sat"], ["a", "cat", "sat", "down"]]
    posterior = [0.5, 0.3, 0.2]
    assert word_confidences(0, word_lists, posterior) == pytest.approx([0.8, 0.7, 1.0])
    # An insertion does not shift the words after it: "x the cat sat" still agrees on all three.
    assert word_confidences(0, [["the", "cat", "sat"], ["x", "the", "cat", "sat"]], [0.6, 0.4]) == pytest.approx([1, 1, 1])


@settings(max_examples=examples(60))
@given(lists, st.lists(st.floats(min_value=-20, max_value=20), min_size=6, max_size=6))
def test_expected_errors_are_the_posterior_weighted_distances(word_lists, scores):
    posterior = posteriors(scores[: len(word_lists)])
    expected = expected_errors(word_lists, posterior)
    for i, hypothesis in enumerate(word_lists):
        brute = sum(p * edit_distance(hypothesis, other) for p, other in zip(posterior, word_lists))
        assert expected[i] == pytest.approx(brute, abs=1e-6)


def test_mbr_takes_the_consensus_and_breaks_ties_by_the_ranking():
    texts = ["a b c d", "w x y z", "w x y q", "w x r z"]
    chosen = decide(texts, [0.0, -0.5, -0.6, -0.7], [0, 1, 2, 3], 1.0, "mbr")
    assert chosen.best == 1 and chosen.expected_errors[1] == min(chosen.expected_errors)
    assert decide(texts, [0.0, -0.5, -0.6, -0.7], [0, 1, 2, 3], 1.0, "map").best == 0
    assert mbr_choice([1.0, 0.5, 0.5], [2, 0, 1]) == 2


def test_named_scores_and_negative_weights_in_the_combined_score():
    weights = RescoringWeights({"target": 0.6, "source": -0.4}, 1.0, -0.5, {"ctc": 0.3})
    total = combined_score(-100.0, {"target": -20.0, "source": -30.0}, 4, weights, {"ctc": -10.0})
    assert total == pytest.approx(-100.0 - 3.0 - 12.0 + 12.0 - 2.0)
    # Without named scores the sum is what it always was, to the bit.
    plain = RescoringWeights({"m": 0.7}, 1.3, 0.1)
    assert combined_score(-123.456, {"m": -7.89}, 3, plain) == 1.3 * -123.456 + 0.7 * -7.89 + 0.1 * 3
    with pytest.raises(ScoreOverflow) as caught:
        rescore_list(["a", "b"], [None, None], [{}, {}], RescoringWeights({}, 1.0, 0.0, {"ctc": 1e308}),
                     [{"ctc": 1.0}, {"ctc": 1e308}])
    assert caught.value.term == "ctc" and caught.value.named and caught.value.hypothesis == 1
    with pytest.raises(ScoreOverflow) as summed:
        combined_score(0.0, {"m": 1.0}, 0, RescoringWeights({"m": 1.7e308}, 1.0, 0.0, {"ctc": 1.0}), {"ctc": 1.7e308})
    assert summed.value.named in (True, False) and "add up" in str(summed.value)
