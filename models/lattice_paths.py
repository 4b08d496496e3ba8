"""Paths through an expanded lattice (a weighted DAG whose arcs add log-domain scores, higher
is better): the k best paths in order, and each arc's posterior by forward-backward.

The k best paths come from the recursive enumeration algorithm (Jiménez & Marzal, 1999): each
vertex keeps the paths that reach it found so far, best first, and a heap of candidates (an
incoming arc after the next path of its source); only what the requested paths need is
computed, so asking for the paths one by one until enough distinct word sequences appear costs
little. It is written with an explicit stack: a lattice's longest path may exceed Python's
recursion limit.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field


@dataclass
class ArcGraph:
    """Vertices 0..count-1 in topological `order`, arcs as parallel lists."""

    start: int
    final: int
    count: int = 0
    order: list[int] = field(default_factory=list)
    source: list[int] = field(default_factory=list)
    target: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    incoming: list[list[int]] = field(default_factory=list)

    def add_vertex(self) -> int:
        self.incoming.append([])
        self.count += 1
        return self.count - 1

    def add_arc(self, source: int, target: int, score: float) -> int:
        self.source.append(source)
        self.target.append(target)
        self.score.append(score)
        self.incoming[target].append(len(self.source) - 1)
        return len(self.source) - 1


class KBestPaths:
    """The paths from `graph.start` to `graph.final`, best first, one at a time: `path(k)` is
    the k-th (0-based) as its arcs, with its score; None when there are fewer."""

    def __init__(self, graph: ArcGraph) -> None:
        self.graph = graph
        self.found: list[list[tuple[float, int, int]]] = [[] for _ in range(graph.count)]  # (score, arc, rank at source)
        self.heaps: list[list | None] = [None] * graph.count
        self.pending: list[tuple[int, int] | None] = [None] * graph.count
        self.exhausted = [False] * graph.count
        self.found[graph.start].append((0.0, -1, -1))
        self.exhausted[graph.start] = True

    def path(self, k: int) -> tuple[float, list[int]] | None:
        self._ensure(self.graph.final, k)
        if len(self.found[self.graph.final]) <= k:
            return None
        score = self.found[self.graph.final][k][0]
        arcs, vertex, rank = [], self.graph.final, k
        while vertex != self.graph.start:
            _, arc, rank = self.found[vertex][rank]
            arcs.append(arc)
            vertex = self.graph.source[arc]
        return score, arcs[::-1]

    def _ensure(self, vertex: int, k: int) -> None:
        graph, found = self.graph, self.found
        stack = [(vertex, k)]
        while stack:
            vertex, k = stack[-1]
            if len(found[vertex]) > k or self.exhausted[vertex]:
                stack.pop()
                continue
            heap = self.heaps[vertex]
            if heap is None:
                missing = [graph.source[arc] for arc in graph.incoming[vertex]
                           if not found[graph.source[arc]] and not self.exhausted[graph.source[arc]]]
                if missing:
                    stack.extend((source, 0) for source in missing)
                    continue
                heap = [(-(found[graph.source[arc]][0][0] + graph.score[arc]), arc, 0)
                        for arc in graph.incoming[vertex] if found[graph.source[arc]]]
                heapq.heapify(heap)
                self.heaps[vertex] = heap
            elif self.pending[vertex] is not None:
                arc, rank = self.pending[vertex]
                source = graph.source[arc]
                if len(found[source]) <= rank + 1 and not self.exhausted[source]:
                    stack.append((source, rank + 1))
                    continue
                if len(found[source]) > rank + 1:
                    heapq.heappush(heap, (-(found[source][rank + 1][0] + graph.score[arc]), arc, rank + 1))
                self.pending[vertex] = None
            if heap:
                negative, arc, rank = heapq.heappop(heap)
                found[vertex].append((-negative, arc, rank))
                self.pending[vertex] = (arc, rank)
            else:
                self.exhausted[vertex] = True


def log_add(values: list[float]) -> float:
    finite = [v for v in values if v != -math.inf]
    if not finite:
        return -math.inf
    top = max(finite)
    return top + math.log(math.fsum(math.exp(v - top) for v in finite))


def arc_posteriors(graph: ArcGraph, scale: float = 1.0) -> list[float]:
    """Each arc's posterior: the share of the paths through it, each path weighted by
    exp(scale · its score). Arcs off every complete path get 0."""
    outgoing: list[list[int]] = [[] for _ in range(graph.count)]
    for arc, source in enumerate(graph.source):
        outgoing[source].append(arc)
    forward = [-math.inf] * graph.count
    forward[graph.start] = 0.0
    for vertex in graph.order:
        if vertex != graph.start:
            forward[vertex] = log_add([forward[graph.source[a]] + scale * graph.score[a] for a in graph.incoming[vertex]])
    backward = [-math.inf] * graph.count
    backward[graph.final] = 0.0
    for vertex in reversed(graph.order):
        if vertex != graph.final:
            backward[vertex] = log_add([scale * graph.score[a] + backward[graph.target[a]] for a in outgoing[vertex]])
    total = forward[graph.final]
    posteriors = []
    for arc in range(len(graph.source)):
        value = forward[graph.source[arc]] + scale * graph.score[arc] + backward[graph.target[arc]] - total
        posteriors.append(0.0 if value == -math.inf or total == -math.inf else min(1.0, math.exp(value)))
    return posteriors
