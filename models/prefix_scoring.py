"""Scoring many sequences that share prefixes (a recogniser's n-best list) through a prefix
tree: each distinct prefix runs through the recurrent model once.

The tree is walked one depth at a time: all nodes of a depth form one batch of a single fused
cell step (each from its parent's state), and the output layer runs once at the end for every
distinct (prefix, next token) pair. Nodes come from all the sequences given, so branches of one
list and the lists of several requests share the work. Results equal scoring each sequence on
its own (`models.scoring.score_sequences`) up to float rounding.
"""
from __future__ import annotations

import torch

from models.rnn_lm import RNNLanguageModel
from models.scoring import SequenceScore, summarise


# When the tree pays (bench.prefix_scoring on 2 CPU cores): 100-best lists (distinct prefixes
# 30% of the positions, ~1,000 positions a list) score 1.3-1.4x faster through it; 10-best lists
# (48%, ~110) 1.5-2x slower, a step per depth costing about what a whole flat batch does.
SHARED_PREFIX_THRESHOLD = 0.4
MIN_POSITIONS = 512


class PrefixTree:
    """The trie of fed prefixes: the node of s[:i+1] is fed s[i] and predicts s[i+1]. Built in
    time linear in the tokens (a node is keyed by its parent and its token)."""

    def __init__(self, sequences: list[list[int]]) -> None:
        child: dict[tuple[int, int], int] = {}
        self.parent: list[int] = []
        self.token: list[int] = []
        self.depth_nodes: list[list[int]] = []
        self.paths: list[list[int]] = []  # per sequence, the node of each fed position
        for sequence in sequences:
            previous, path = -1, []
            for i in range(len(sequence) - 1):
                node = child.get((previous, sequence[i]))
                if node is None:
                    node = child[(previous, sequence[i])] = len(self.token)
                    self.parent.append(previous)
                    self.token.append(sequence[i])
                    if len(self.depth_nodes) <= i:
                        self.depth_nodes.append([])
                    self.depth_nodes[i].append(node)
                path.append(node)
                previous = node
            self.paths.append(path)

    def __len__(self) -> int:
        return len(self.token)


def distinct_prefixes(sequences: list[list[int]]) -> int:
    """Nodes the tree runs through the model: the distinct proper prefixes of the sequences."""
    return len(PrefixTree(sequences))


def shares_prefixes(sequences: list[list[int]]) -> bool:
    """Whether scoring through the tree saves enough to be worth it."""
    positions = sum(len(s) - 1 for s in sequences)
    return positions >= MIN_POSITIONS and distinct_prefixes(sequences) <= SHARED_PREFIX_THRESHOLD * positions


@torch.inference_mode()
def score_prefix_tree(model: RNNLanguageModel, sequences: list[list[int]]) -> list[SequenceScore]:
    """Like `score_sequences`: each sequence's first id is context, every later id is scored."""
    if any(len(s) < 2 for s in sequences):
        raise ValueError("each sequence needs a context token and at least one token to score")
    device = model.embedding.weight.device
    tree = PrefixTree(sequences)
    parent, token = tree.parent, tree.token
    # One fused cell step per depth for all of that depth's nodes, from their parents' states;
    # the output rows are kept and the output layer runs once, at the end, for every target.
    row_of = [0] * len(token)  # a node's row in its depth's batch
    outputs = []
    offset = [0] * len(token)  # a node's row in the concatenated outputs
    state = None
    total = 0
    for nodes in tree.depth_nodes:
        fed = torch.tensor([token[n] for n in nodes], device=device)
        if state is None:
            state = model.init_state(len(nodes), device)
        else:
            index = torch.tensor([row_of[parent[n]] for n in nodes], device=device)
            state = tuple(s[:, index] for s in state)
        hidden, state = model.step_hidden(fed, state)  # (N, D)
        for row, node in enumerate(nodes):
            row_of[node] = row
            offset[node] = total + row
        outputs.append(hidden)
        total += len(nodes)
    # Each distinct (prefix, next token) pair once: hypotheses that share a prefix mostly share
    # its next token too, so the output layer's work shrinks like the recurrent work.
    pair_index: dict[tuple[int, int], int] = {}
    lookups = []
    for sequence, path in zip(sequences, tree.paths):
        for i, node in enumerate(path):
            pair = (offset[node], sequence[i + 1])
            lookups.append(pair_index.setdefault(pair, len(pair_index)))
    pairs = list(pair_index)
    rows = torch.tensor([row for row, _ in pairs], device=device)
    targets = torch.tensor([target for _, target in pairs], device=device)
    unique_values = model.logprobs_of(torch.cat(outputs)[rows], targets).cpu().tolist()
    values = [unique_values[i] for i in lookups]
    results, position = [], 0
    for sequence in sequences:
        results.append(summarise(values[position : position + len(sequence) - 1]))
        position += len(sequence) - 1
    return results
