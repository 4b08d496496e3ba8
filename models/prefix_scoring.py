"""Scoring many sequences that share prefixes (a recogniser's n-best list) through a prefix
tree: each distinct prefix runs through the recurrent model once.

The tree is run layer by layer; within a layer, one depth at a time: all nodes of a depth form
one batch (each from its parent's state), and the output layer runs once at the end for every
distinct (prefix, next token) pair. Nodes come from all the sequences given, so branches of one
list and the lists of several requests share the work. Results equal scoring each sequence on
its own (`models.scoring.score_sequences`) up to float rounding.
"""
from __future__ import annotations

import torch

from models.rnn_lm import RNNLanguageModel
from models.scoring import SequenceScore, summarise
from models.tree_layers import Inputs

# The tree pays only when the input shares much of its prefixes and is large enough for its
# per-depth products to outweigh flat scoring's one fused pass (long n-best lists); small or
# unshared inputs stay flat. docs/benchmarks/prefix-scoring.md has the measurements.
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


def runs_as_tree(model: RNNLanguageModel) -> bool:
    """Whether the tree can run the model's cell (one with a layer in `models.tree_layers`)."""
    return model.rnn.tree_layer is not None


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
    # Nodes renumbered depth by depth, so that each depth is one contiguous block of rows.
    order = [node for nodes in tree.depth_nodes for node in nodes]
    row_of = [0] * len(order)
    for row, node in enumerate(order):
        row_of[node] = row
    blocks, start = [], 0
    for nodes in tree.depth_nodes:
        parents = None if start == 0 else torch.tensor([row_of[tree.parent[n]] for n in nodes], device=device)
        blocks.append((start, start + len(nodes), parents))
        start += len(nodes)
    # The first layer's input depends on the token alone: project each distinct token once.
    tokens, fed = torch.tensor([tree.token[n] for n in order], device=device).unique(return_inverse=True)
    x: torch.Tensor | Inputs = Inputs(model.embedding(tokens), fed)
    for layer in range(model.config.num_layers):
        x = model.rnn.tree_layer(x, blocks, *model.rnn.layer_weights(layer))
    if model.projection is not None:
        x = model.projection(x)
    # Each distinct (prefix, next token) pair once: hypotheses that share a prefix mostly share
    # its next token too, so the output layer's work shrinks like the recurrent work.
    pair_index: dict[tuple[int, int], int] = {}
    lookups = []
    for sequence, path in zip(sequences, tree.paths):
        for i, node in enumerate(path):
            pair = (row_of[node], sequence[i + 1])
            lookups.append(pair_index.setdefault(pair, len(pair_index)))
    pairs = list(pair_index)
    rows = torch.tensor([row for row, _ in pairs], device=device)
    targets = torch.tensor([target for _, target in pairs], device=device)
    unique_values = model.logprobs_of(x[rows], targets).cpu().tolist()
    values = [unique_values[i] for i in lookups]
    results, position = [], 0
    for sequence in sequences:
        results.append(summarise(values[position : position + len(sequence) - 1]))
        position += len(sequence) - 1
    return results
