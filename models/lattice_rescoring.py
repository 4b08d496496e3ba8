"""Lattice rescoring with a recurrent language model, as Kaldi's pruned RNNLM lattice rescoring
does it: the lattice is expanded with the model's state, histories that agree in their last
`max_ngram_order - 1` words merge, and a beam prunes what falls far behind.

    arc score = acoustic_weight · a + lm_weight · log p_model(word | history)
                + lattice_lm_weight · l + word_insertion_penalty   (the last two terms for words only)

and at the end node lm_weight · log p_model(end | history). A path's score is the sum of its
arcs' (natural logs; with `lattice_lm_weight` the lattice's own LM scores join the model's
log-linearly, as Kaldi's `--lm-scale` interpolates them).

The walk is over the lattice's nodes in layers (a node's layer is its longest distance from the
start, so no link joins two nodes of a layer). An expanded state is (node, last n-1 words) and
holds a model state; a layer's states are pruned against the best at their node (`beam`), then
every distinct (state, word) its links need is one request to the model: the requests of all
lattices rescored together go to the model as one batch (`WordScorer.advance`). When two
histories merge, the state keeps the model state of the better-scoring one. With an order
beyond the longest path and no beam nothing merges or is pruned, and the result is exactly
scoring every path on its own.

The result: the n best distinct word sequences (`models.lattice_paths.KBestPaths` over the
expanded graph), and the best path's words with their times and confidences: a word's
confidence is the posterior (forward-backward over the expanded graph, scores times
`posterior_scale`) of the links that carry the same word over the same time: with node times,
the largest total posterior of such links at any instant of the word's span (Wessel et al.,
2001), so it never exceeds 1; without times, the links between the same two nodes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from models.lattice import Lattice
from models.lattice_lm import WordScorer
from models.lattice_paths import ArcGraph, KBestPaths, arc_posteriors

# A bound on a language model's cost for one word (nats), far beyond any real one (a spelled
# unknown word costs tens): what a score's range is checked against before any work.
LM_COST_BOUND_PER_WORD = 1e6
# Scores larger than this leave no room for the sums of forward-backward.
SCORE_LIMIT = 1e300
# Paths enumerated per distinct word sequence asked for, at most: paths of one word sequence
# differ only in their times or links.
PATHS_PER_SEQUENCE = 20


@dataclass(frozen=True)
class LatticeWeights:
    acoustic_weight: float = 1.0
    lm_weight: float = 1.0
    lattice_lm_weight: float = 0.0
    word_insertion_penalty: float = 0.0


@dataclass(frozen=True)
class ExpansionOptions:
    max_ngram_order: int = 4  # histories that agree in their last (order - 1) words merge
    beam: float | None = None  # states further than this behind the best at their node are dropped; None: none are
    nbest: int = 5
    max_states: int = 100_000  # expanded states per lattice
    posterior_scale: float = 1.0  # scores are multiplied by this for the posteriors (confidences)

    def __post_init__(self) -> None:
        if self.max_ngram_order < 1 or self.nbest < 1 or self.max_states < 1:
            raise ValueError("max_ngram_order, nbest and max_states must be at least 1")
        if self.beam is not None and not self.beam >= 0:
            raise ValueError("beam must be at least 0")


class ExpansionTooLarge(ValueError):
    """A lattice needs more expanded states than `ExpansionOptions.max_states`."""


class ScoreRangeError(ArithmeticError):
    """A weight times the lattice's scores can leave the range of a float; `param` names the weight."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class TimedWord:
    word: str
    start: float | None  # seconds (the node times), when the lattice has them
    end: float | None
    confidence: float


@dataclass
class ScoredPath:
    words: list[str]
    score: float
    acoustic_score: float  # sum of the path's a= scores (natural log)
    lm_logprob: float  # the model's log-probability of the words and the end
    lattice_lm_score: float  # sum of the path's l= scores
    num_words: int


@dataclass
class RescoredLattice:
    best: list[TimedWord]
    nbest: list[ScoredPath]  # distinct word sequences, best first (nbest[0] is the best path)
    expanded_states: int
    expanded_arcs: int
    pruned_states: int
    lm_queries: int  # (state, word) and end-of-text questions put to the model


def check_score_range(lattice: Lattice, weights: LatticeWeights, posterior_scale: float = 1.0) -> None:
    """Raise ScoreRangeError when some path's score (or its scaled score) could overflow."""
    links = len(lattice.links)
    terms = {
        "acoustic_weight": (weights.acoustic_weight, math.fsum(abs(link.acoustic) for link in lattice.links)),
        "lattice_lm_weight": (weights.lattice_lm_weight, math.fsum(abs(link.language) for link in lattice.links)),
        "lm_weight": (weights.lm_weight, (links + 1) * LM_COST_BOUND_PER_WORD),
        "word_insertion_penalty": (weights.word_insertion_penalty, float(links)),
    }
    products = {name: 0.0 if weight == 0 else abs(weight) * bound for name, (weight, bound) in terms.items()}
    total = sum(products.values())
    if not total <= SCORE_LIMIT:
        largest = max(products, key=products.get)
        raise ScoreRangeError(largest, f"{largest} = {terms[largest][0]:g} times the lattice's scores can exceed the range "
                                       f"of a float; use smaller weights or scores")
    if not total * posterior_scale <= SCORE_LIMIT:
        raise ScoreRangeError("posterior_scale", f"posterior_scale = {posterior_scale:g} times the lattice's scores can exceed "
                                                 f"the range of a float")


def layers_of(lattice: Lattice) -> list[list[int]]:
    """The nodes reachable from the start, grouped by their longest distance from it."""
    depth: dict[int, int] = {lattice.start: 0}
    outgoing = lattice.outgoing()
    for node in lattice.topological_order():
        if node in depth:
            for index in outgoing[node]:
                end = lattice.links[index].end
                depth[end] = max(depth.get(end, 0), depth[node] + 1)
    layers: list[list[int]] = [[] for _ in range(max(depth.values()) + 1)]
    for node in sorted(depth):
        layers[depth[node]].append(node)
    return layers


@dataclass
class _States:
    node: list[int] = field(default_factory=list)
    history: list[tuple[str, ...]] = field(default_factory=list)
    handle: list[int] = field(default_factory=list)
    best: list[float] = field(default_factory=list)  # the best score of a path reaching the state


class LatticeExpansion:
    """One lattice's expansion, a layer at a time: `requests()` prunes the next layer and says
    what it needs of the model, `receive()` takes the answers."""

    def __init__(self, lattice: Lattice, weights: LatticeWeights, options: ExpansionOptions, start_handle: int) -> None:
        self.lattice, self.weights, self.options = lattice, weights, options
        self.layers = layers_of(lattice)
        self.layer_of = {node: index for index, nodes in enumerate(self.layers) for node in nodes}
        self.outgoing = lattice.outgoing()
        self.states = _States()
        self.state_of: dict[tuple[int, tuple[str, ...]], int] = {}
        self.at_node: dict[int, list[int]] = {}
        self.arc_source: list[int] = []
        self.arc_target: list[int] = []  # a state, or -1: the end of text
        self.arc_link: list[int] = []  # the lattice link, or -1 for the end of text
        self.arc_score: list[float] = []
        self.arc_lm: list[float] = []
        self.pruned = 0
        self.lm_queries = 0
        self.next_layer = 0
        self._waiting: list[tuple[int, int, int]] = []  # (state, link, request)
        self._finishing: list[int] = []
        self._new_state(lattice.start, (), start_handle, 0.0)

    @property
    def finished(self) -> bool:
        return self.next_layer == len(self.layers)

    def _new_state(self, node: int, history: tuple[str, ...], handle: int, best: float) -> int:
        if len(self.states.node) >= self.options.max_states:
            raise ExpansionTooLarge(f"the expansion needs more than {self.options.max_states} states; lower beam or "
                                    f"max_ngram_order, or send a smaller lattice")
        state = len(self.states.node)
        self.states.node.append(node)
        self.states.history.append(history)
        self.states.handle.append(handle)
        self.states.best.append(best)
        self.state_of[(node, history)] = state
        self.at_node.setdefault(node, []).append(state)
        return state

    def _kept(self, states: list[int]) -> list[int]:
        if self.options.beam is None or not states:
            return states
        threshold = max(self.states.best[s] for s in states) - self.options.beam
        kept = [s for s in states if self.states.best[s] >= threshold]
        self.pruned += len(states) - len(kept)
        return kept

    def requests(self) -> tuple[list[tuple[int, str]], list[int]]:
        """Prune the next layer's states; returns the (model state, word) steps and the model
        states whose end-of-text probability it needs."""
        steps: list[tuple[int, str]] = []
        index_of: dict[tuple[int, str], int] = {}
        self._waiting, self._finishing = [], []
        for node in self.layers[self.next_layer]:
            states = self._kept(self.at_node.get(node, []))
            if node == self.lattice.end:
                self._finishing = states
                continue
            for state in states:
                for link_index in self.outgoing[node]:
                    word = self.lattice.links[link_index].word
                    if word is None:
                        self._add_arc(state, link_index, 0.0, self.states.handle[state])
                        continue
                    key = (state, word)
                    if key not in index_of:
                        index_of[key] = len(steps)
                        steps.append((self.states.handle[state], word))
                    self._waiting.append((state, link_index, index_of[key]))
        self.lm_queries += len(steps) + len(self._finishing)
        return steps, [self.states.handle[s] for s in self._finishing]

    def receive(self, steps: list[tuple[float, int]], finals: list[float]) -> None:
        for state, link_index, request in self._waiting:
            logprob, handle = steps[request]
            self._add_arc(state, link_index, logprob, handle)
        for state, logprob in zip(self._finishing, finals):
            self._add(state, -1, -1, self.weights.lm_weight * logprob, logprob)
        self._waiting, self._finishing = [], []
        self.next_layer += 1

    def _add(self, source: int, target: int, link: int, score: float, lm: float) -> None:
        self.arc_source.append(source)
        self.arc_target.append(target)
        self.arc_link.append(link)
        self.arc_score.append(score)
        self.arc_lm.append(lm)

    def _add_arc(self, state: int, link_index: int, logprob: float, handle: int) -> None:
        link, weights = self.lattice.links[link_index], self.weights
        score = weights.acoustic_weight * link.acoustic + weights.lattice_lm_weight * link.language
        history = self.states.history[state]
        if link.word is not None:
            score += weights.lm_weight * logprob + weights.word_insertion_penalty
            extended, keep = history + (link.word,), self.options.max_ngram_order - 1
            history = extended[max(0, len(extended) - keep):] if keep else ()
        total = self.states.best[state] + score
        target = self.state_of.get((link.end, history))
        if target is None:
            target = self._new_state(link.end, history, handle, total)
        elif total > self.states.best[target]:
            # Merged histories continue from the better one's model state.
            self.states.best[target], self.states.handle[target] = total, handle
        self._add(state, target, link_index, score, logprob)

    def graph(self) -> ArcGraph:
        count = len(self.states.node)
        graph = ArcGraph(start=0, final=count)
        for _ in range(count + 1):
            graph.add_vertex()
        for source, target, score in zip(self.arc_source, self.arc_target, self.arc_score):
            graph.add_arc(source, count if target < 0 else target, score)
        graph.order = sorted(range(count), key=lambda s: self.layer_of[self.states.node[s]]) + [count]
        return graph

    def result(self) -> RescoredLattice:
        graph = self.graph()
        lattice, options = self.lattice, self.options
        paths = KBestPaths(graph)
        nbest: list[ScoredPath] = []
        seen: set[tuple[str, ...]] = set()
        best_arcs: list[int] = []
        for k in range(max(100, PATHS_PER_SEQUENCE * options.nbest)):
            found = paths.path(k)
            if found is None or len(nbest) == options.nbest:
                break
            score, arcs = found
            links = [self.arc_link[a] for a in arcs if self.arc_link[a] >= 0]
            words = tuple(lattice.links[i].word for i in links if lattice.links[i].word is not None)
            if k == 0:
                best_arcs = links
            if words in seen:
                continue
            seen.add(words)
            nbest.append(ScoredPath(list(words), score, math.fsum(lattice.links[i].acoustic for i in links),
                                    math.fsum(self.arc_lm[a] for a in arcs), math.fsum(lattice.links[i].language for i in links),
                                    len(words)))
        posteriors = arc_posteriors(graph, options.posterior_scale)
        link_posterior = [0.0] * len(lattice.links)
        for arc, posterior in enumerate(posteriors):
            if self.arc_link[arc] >= 0:
                link_posterior[self.arc_link[arc]] += posterior
        with_word: dict[str, list[int]] = {}
        for index in set(best_arcs):
            with_word.setdefault(lattice.links[index].word, [])
        for index, link in enumerate(lattice.links):
            if link.word in with_word:
                with_word[link.word].append(index)
        best = [self._timed_word(index, link_posterior, with_word[lattice.links[index].word]) for index in best_arcs
                if lattice.links[index].word is not None]
        return RescoredLattice(best, nbest, len(self.states.node), len(self.arc_source), self.pruned, self.lm_queries)

    def _timed_word(self, index: int, link_posterior: list[float], same_word: list[int]) -> TimedWord:
        """The word of link `index` with its times and confidence; `same_word`: the links with its word."""
        lattice = self.lattice
        link = lattice.links[index]
        if not lattice.has_times:
            confidence = math.fsum(link_posterior[i] for i in same_word
                                   if (lattice.links[i].start, lattice.links[i].end) == (link.start, link.end))
            return TimedWord(link.word, None, None, min(1.0, confidence))
        begin, end = lattice.nodes[link.start].time, lattice.nodes[link.end].time
        spans = [(lattice.nodes[lattice.links[i].start].time, lattice.nodes[lattice.links[i].end].time, link_posterior[i])
                 for i in same_word]
        if end > begin:
            overlapping = [(s, e, p) for s, e, p in spans if s < end and e > begin]
            cuts = sorted({begin, end} | {t for s, e, _ in overlapping for t in (s, e) if begin < t < end})
            instants = [(a + b) / 2 for a, b in zip(cuts, cuts[1:])]
            confidence = max(math.fsum(p for s, e, p in overlapping if s < t < e) for t in instants)
        else:
            confidence = math.fsum(p for s, e, p in spans if s <= begin <= e)
        return TimedWord(link.word, begin, end, min(1.0, confidence))


def rescore_lattices(lattices: list[Lattice], scorer: WordScorer, weights: LatticeWeights | list[LatticeWeights],
                     options: ExpansionOptions | list[ExpansionOptions]) -> list[RescoredLattice | ExpansionTooLarge]:
    """Rescore lattices together (with one weights and options for all, or one each): each
    round every unfinished lattice expands its next layer, and all their questions go to the
    model as one batch. A lattice that needs more states than allowed gets its
    ExpansionTooLarge; the others go on."""
    start = scorer.start()
    weights = [weights] * len(lattices) if isinstance(weights, LatticeWeights) else list(weights)
    options = [options] * len(lattices) if isinstance(options, ExpansionOptions) else list(options)
    results: list[RescoredLattice | ExpansionTooLarge | None] = [None] * len(lattices)
    expansions = [LatticeExpansion(*item, start) for item in zip(lattices, weights, options)]
    active = list(range(len(lattices)))
    while active:
        steps: list[tuple[int, str]] = []
        finals: list[int] = []
        spans: dict[int, tuple[int, int, int, int]] = {}
        for index in active:
            try:
                wanted, ending = expansions[index].requests()
            except ExpansionTooLarge as error:
                results[index] = error
                continue
            spans[index] = (len(steps), len(steps) + len(wanted), len(finals), len(finals) + len(ending))
            steps += wanted
            finals += ending
        answers = scorer.advance(steps) if steps else []
        ends = scorer.finish(finals) if finals else []
        for index, (first, last, first_end, last_end) in spans.items():
            try:
                expansions[index].receive(answers[first:last], ends[first_end:last_end])
            except ExpansionTooLarge as error:
                results[index] = error
        active = [index for index in active if results[index] is None and not expansions[index].finished]
    return [expansions[i].result() if result is None else result for i, result in enumerate(results)]
