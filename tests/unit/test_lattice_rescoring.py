"""Lattice rescoring against scoring every path on its own: with an order beyond the longest
path and no beam, the best path, the n-best list and the confidences equal what enumerating the
paths and scoring each through the ordinary scoring path (`score_encoded`) gives; with merging
and pruning the answer is still a path of the lattice, consistently scored."""
from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.lattice import Lattice, Link, Node, parse_slf
from models.lattice_lm import word_scorer
from models.lattice_rescoring import (
    ExpansionOptions,
    ExpansionTooLarge,
    LatticeWeights,
    check_score_range,
    rescore_lattices,
)
from models.registry import load_model
from tests.conftest import SHIPPED_MODELS, examples

# Words of the tiny corpus, one it never saw (spelled), and None: a link with no word.
WORDS = ["the", "cat", "dog", "sat", "on", "mat", "ran", "to", ".", "zebra", None]
EXACT = 50  # an n-gram order beyond any test lattice's longest path


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    return load_model(tiny_model_path)


@pytest.fixture(scope="module")
def trigram(tiny_ngram_path):
    return load_model(tiny_ngram_path)


def path_scores(loaded, lattice: Lattice, weights: LatticeWeights, unknown_words: str = "spell") -> dict[tuple, tuple[float, list]]:
    """Every path through the ordinary scoring path: words -> (best score, the paths' (score, links))."""
    paths = lattice.paths()
    words = [lattice.words_of(path) for path in paths]
    if loaded.tokenizer.reads_tokenized_corpora:
        encoded = [loaded.encode_tokens(w, add_start=True, add_end=True) for w in words]
    else:
        encoded = [loaded.encode_text(" ".join(w), add_start=True, add_end=True) for w in words]
    scored = loaded.score_encoded(encoded, unknown_words)
    result: dict[tuple, tuple[float, list]] = {}
    for path, path_words, score in zip(paths, words, scored):
        total = (weights.acoustic_weight * math.fsum(lattice.links[i].acoustic for i in path)
                 + weights.lm_weight * score.score.logprob
                 + weights.lattice_lm_weight * math.fsum(lattice.links[i].language for i in path)
                 + weights.word_insertion_penalty * len(path_words))
        best, members = result.get(tuple(path_words), (-math.inf, []))
        result[tuple(path_words)] = (max(best, total), members + [(total, path)])
    return result


@st.composite
def small_lattices(draw) -> Lattice:
    """A DAG of 2 to 6 nodes: a chain from the first to the last node plus forward links."""
    count = draw(st.integers(2, 6))
    edges = [(i, i + 1) for i in range(count - 1)]
    extra = st.tuples(st.integers(0, count - 2), st.integers(1, count - 1)).filter(lambda e: e[0] < e[1])
    edges += draw(st.lists(extra, max_size=5))
    score = st.floats(-30, 0, allow_nan=False).map(lambda x: round(x, 3))
    links = [Link(s, e, draw(st.sampled_from(WORDS)), draw(score), draw(score), 0) for s, e in edges]
    times = draw(st.booleans())
    nodes = [Node(0.1 * i if times else None, None) for i in range(count)]
    return Lattice(nodes, links, 0, count - 1)


weights_strategy = st.builds(LatticeWeights, st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([0.5, 1.0, 3.0]),
                             st.sampled_from([0.0, 0.7]), st.sampled_from([-1.0, 0.0, 1.5]))


def posterior_confidence(exhaustive: dict, lattice: Lattice, link_index: int) -> float:
    """The share of all paths (weighted by exp(score)) that carry the link's word over its time:
    at the instant of the span where that share is largest (without times: between its nodes)."""
    paths = [(score, path) for _, members in exhaustive.values() for score, path in members]
    top = max(score for score, _ in paths)
    total = math.fsum(math.exp(score - top) for score, _ in paths)
    link = lattice.links[link_index]

    def carries(path, test) -> bool:
        return any(lattice.links[i].word == link.word and test(lattice.links[i]) for i in path)

    if not lattice.has_times:
        same_place = lambda other: (other.start, other.end) == (link.start, link.end)  # noqa: E731
        return math.fsum(math.exp(s - top) for s, p in paths if carries(p, same_place)) / total
    begin, end = lattice.nodes[link.start].time, lattice.nodes[link.end].time
    cuts = sorted({begin, end} | {lattice.nodes[n].time for n in range(len(lattice.nodes)) if begin < lattice.nodes[n].time < end})
    best = 0.0
    for instant in [(a + b) / 2 for a, b in zip(cuts, cuts[1:])]:
        covers = lambda other, t=instant: lattice.nodes[other.start].time < t < lattice.nodes[other.end].time  # noqa: E731
        best = max(best, math.fsum(math.exp(s - top) for s, p in paths if carries(p, covers)) / total)
    return best


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lattice=small_lattices(), weights=weights_strategy, nbest=st.integers(1, 6))
def test_without_merging_or_pruning_it_equals_scoring_every_path(tiny, lattice, weights, nbest):
    exhaustive = path_scores(tiny, lattice, weights)
    (result,) = rescore_lattices([lattice], word_scorer(tiny), weights, ExpansionOptions(EXACT, None, nbest))
    expected = sorted((best for best, _ in exhaustive.values()), reverse=True)[:nbest]
    assert [p.score for p in result.nbest] == pytest.approx(expected, abs=1e-4)
    for path in result.nbest:
        assert exhaustive[tuple(path.words)][0] == pytest.approx(path.score, abs=1e-4)
        parts = (weights.acoustic_weight * path.acoustic_score + weights.lm_weight * path.lm_logprob
                 + weights.lattice_lm_weight * path.lattice_lm_score + weights.word_insertion_penalty * path.num_words)
        assert parts == pytest.approx(path.score, abs=1e-6) and path.num_words == len(path.words)
    assert len({tuple(p.words) for p in result.nbest}) == len(result.nbest)
    assert [w.word for w in result.best] == result.nbest[0].words
    # Each word's confidence and times come from the links of the best path (one of them, if
    # several paths of the same words tie).
    best_score, members = exhaustive[tuple(result.nbest[0].words)]
    candidates = []
    for score, path in members:
        if score == pytest.approx(best_score, abs=1e-4):
            word_links = [i for i in path if lattice.links[i].word is not None]
            candidates.append([(posterior_confidence(exhaustive, lattice, i), lattice.nodes[lattice.links[i].start].time,
                                lattice.nodes[lattice.links[i].end].time) for i in word_links])
    got = [(w.confidence, w.start, w.end) for w in result.best]
    assert any(all(c == pytest.approx(g[0], abs=1e-4) and (start, end) == g[1:] for (c, start, end), g in zip(expected_words, got))
               for expected_words in candidates), (got, candidates)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lattice=small_lattices(), weights=weights_strategy, order=st.integers(1, 3), beam=st.sampled_from([None, 0.0, 1.0, 5.0]))
def test_with_merging_and_pruning_it_returns_paths_of_the_lattice(tiny, lattice, weights, order, beam):
    exhaustive = path_scores(tiny, lattice, weights)
    (result,) = rescore_lattices([lattice], word_scorer(tiny), weights, ExpansionOptions(order, beam, 4))
    assert 1 <= len(result.nbest) <= 4
    scores = [p.score for p in result.nbest]
    assert scores == sorted(scores, reverse=True)
    for path in result.nbest:
        assert tuple(path.words) in exhaustive
        parts = (weights.acoustic_weight * path.acoustic_score + weights.lm_weight * path.lm_logprob
                 + weights.lattice_lm_weight * path.lattice_lm_score + weights.word_insertion_penalty * path.num_words)
        assert parts == pytest.approx(path.score, abs=1e-6)
    assert [w.word for w in result.best] == result.nbest[0].words
    assert all(0.0 <= w.confidence <= 1.0 for w in result.best)
    if order == 1 and beam is None:  # one state per node: no more states than nodes
        assert result.expanded_states <= len(lattice.nodes)


def test_lattices_rescored_together_get_what_they_get_alone(tiny):
    rng = random.Random(4)
    lattices = []
    for size in (3, 5, 8):
        links = [Link(i, i + 1, rng.choice(WORDS[:-1]), -rng.random(), 0.0, 0) for i in range(size - 1)]
        links += [Link(i, i + 2, rng.choice(WORDS), -rng.random(), 0.0, 0) for i in range(size - 2)]
        lattices.append(Lattice([Node(None, None)] * size, links, 0, size - 1))
    options = ExpansionOptions(3, 2.0, 3)
    together = rescore_lattices(lattices, word_scorer(tiny), LatticeWeights(), options)
    for lattice, joint in zip(lattices, together):
        (alone,) = rescore_lattices([lattice], word_scorer(tiny), LatticeWeights(), options)
        assert [p.words for p in joint.nbest] == [p.words for p in alone.nbest]
        assert [p.score for p in joint.nbest] == pytest.approx([p.score for p in alone.nbest], abs=1e-5)
        assert joint.expanded_states == alone.expanded_states


def test_an_ngram_model_merged_at_its_own_order_is_exact(trigram):
    rng = random.Random(7)
    size = 7
    links = [Link(i, j, rng.choice(WORDS), -rng.random() * 5, 0.0, 0) for i in range(size - 1) for j in (i + 1, i + 2) if j < size]
    lattice = Lattice([Node(None, None)] * size, links, 0, size - 1)
    weights = LatticeWeights(1.0, 2.0, 0.0, 0.5)
    exhaustive = path_scores(trigram, lattice, weights)
    expected = sorted((best for best, _ in exhaustive.values()), reverse=True)[:5]
    (merged,) = rescore_lattices([lattice], word_scorer(trigram), weights, ExpansionOptions(trigram.model.order, None, 5))
    assert [p.score for p in merged.nbest] == pytest.approx(expected, abs=1e-6)
    (unmerged,) = rescore_lattices([lattice], word_scorer(trigram), weights, ExpansionOptions(EXACT, None, 5))
    assert merged.expanded_states < unmerged.expanded_states


@pytest.mark.parametrize("model", ["wikitext2-lstm", "shakespeare-char-lstm"])
def test_shipped_models_score_lattice_paths_as_their_texts(model):
    """An adaptive head with spelled unknown words, and a character model whose words are read
    after spaces: the best path and its score are those of scoring each path's text."""
    loaded = load_model(SHIPPED_MODELS / model)
    text = ("N=5 L=7\nJ=0 S=0 E=1 W=the a=-10\nJ=1 S=0 E=1 W=a a=-11\nJ=2 S=1 E=2 W=cat a=-10\nJ=3 S=1 E=2 W=Qwzrt a=-9\n"
            "J=4 S=2 E=3 W=sat a=-10\nJ=5 S=2 E=4 W=slept a=-12\nJ=6 S=3 E=4 W=!NULL\n")
    lattice = parse_slf(text)
    weights = LatticeWeights(1.0, 1.0)
    exhaustive = path_scores(loaded, lattice, weights)
    (result,) = rescore_lattices([lattice], word_scorer(loaded), weights, ExpansionOptions(EXACT, None, 8))
    expected = sorted((best for best, _ in exhaustive.values()), reverse=True)
    assert [p.score for p in result.nbest] == pytest.approx(expected, abs=1e-4)
    (unk,) = rescore_lattices([lattice], word_scorer(loaded, "unk"), weights, ExpansionOptions(EXACT, None, 8))
    assert [p.score for p in unk.nbest] == pytest.approx(sorted((b for b, _ in path_scores(loaded, lattice, weights, "unk").values()),
                                                               reverse=True), abs=1e-4)


def test_a_lattice_needing_too_many_states_fails_alone(tiny):
    wide = Lattice([Node(None, None)] * 6, [Link(i, i + 1, w, 0.0, 0.0, 0) for i in range(5) for w in WORDS[:6]], 0, 5)
    small = Lattice([Node(None, None)] * 2, [Link(0, 1, "cat", 0.0, 0.0, 0)], 0, 1)
    too_large, fine = rescore_lattices([wide, small], word_scorer(tiny), LatticeWeights(), ExpansionOptions(EXACT, None, 1, max_states=50))
    assert isinstance(too_large, ExpansionTooLarge) and "more than 50 states" in str(too_large)
    assert fine.nbest[0].words == ["cat"]


def test_score_range_names_the_weight_that_overflows():
    lattice = Lattice([Node(None, None)] * 2, [Link(0, 1, "cat", -1e300, -1.0, 0)], 0, 1)
    with pytest.raises(ArithmeticError) as caught:
        check_score_range(lattice, LatticeWeights(acoustic_weight=10.0))
    assert caught.value.param == "acoustic_weight"
    with pytest.raises(ArithmeticError) as caught:
        check_score_range(Lattice(lattice.nodes, [Link(0, 1, "cat", -1.0, -1.0, 0)], 0, 1), LatticeWeights(lm_weight=1e299))
    assert caught.value.param == "lm_weight"
    check_score_range(Lattice(lattice.nodes, [Link(0, 1, "cat", -1e5, -1.0, 0)], 0, 1), LatticeWeights(32.0, 32.0, 1.0, -200.0))
