"""Scoring many sequences that share prefixes (a recogniser's n-best list) through a prefix
tree: each distinct prefix runs through the recurrent model once.

The tree is walked one depth at a time: every node at a depth that has children is one row of a
single batched cell step (its parent's state, its own token), and the log-probabilities of all
its children are read from that step's output. Rows come from all the sequences given, so
branches of one list and lists of several requests share the work. Results equal scoring each
sequence on its own (`models.scoring.score_sequences`) up to float rounding.
"""
from __future__ import annotations

import torch

from models.rnn_lm import RNNLanguageModel
from models.scoring import SequenceScore, summarise


# The tree steps one depth at a time; below this share of distinct prefixes among all scored
# positions, the work it saves outweighs that (measured by bench.prefix_scoring).
SHARED_PREFIX_THRESHOLD = 0.6


def distinct_prefixes(sequences: list[list[int]]) -> int:
    """Nodes the tree runs through the model: the distinct proper prefixes of the sequences."""
    return len({tuple(s[:i]) for s in sequences for i in range(1, len(s))})


def shares_prefixes(sequences: list[list[int]]) -> bool:
    """Whether scoring through the tree saves enough to be worth it."""
    positions = sum(len(s) - 1 for s in sequences)
    return positions > 0 and distinct_prefixes(sequences) <= SHARED_PREFIX_THRESHOLD * positions


@torch.inference_mode()
def score_prefix_tree(model: RNNLanguageModel, sequences: list[list[int]]) -> list[SequenceScore]:
    """Like `score_sequences`: each sequence's first id is context, every later id is scored."""
    if any(len(s) < 2 for s in sequences):
        raise ValueError("each sequence needs a context token and at least one token to score")
    device = model.embedding.weight.device
    # node id per distinct prefix; the node of prefix s[:i+1] predicts s[i+1]
    node_of: dict[tuple[int, ...], int] = {}
    parents: list[int] = []
    tokens: list[int] = []
    depths: list[int] = []
    paths: list[list[int]] = []
    for sequence in sequences:
        path = []
        for i in range(len(sequence) - 1):  # the last token predicts nothing
            prefix = tuple(sequence[: i + 1])
            node = node_of.get(prefix)
            if node is None:
                node = node_of[prefix] = len(tokens)
                parents.append(path[-1] if path else -1)
                tokens.append(sequence[i])
                depths.append(i)
            path.append(node)
        paths.append(path)
    # wanted[node] = the targets asked of it: (sequence, position)
    wanted: dict[int, list[tuple[int, int]]] = {}
    for index, (sequence, path) in enumerate(zip(sequences, paths)):
        for position, node in enumerate(path):
            wanted.setdefault(node, []).append((index, position))
    results = [[0.0] * (len(s) - 1) for s in sequences]
    by_depth: dict[int, list[int]] = {}
    for node, depth in enumerate(depths):
        by_depth.setdefault(depth, []).append(node)
    row_of: dict[int, int] = {}  # node -> its row in the previous depth's state
    state = None
    for depth in sorted(by_depth):
        nodes = by_depth[depth]
        batch_tokens = torch.tensor([tokens[n] for n in nodes], device=device)
        if state is None:
            parent_state = model.init_state(len(nodes), device)
        else:
            index = torch.tensor([row_of[parents[n]] for n in nodes], device=device)
            parent_state = tuple(s[:, index] for s in state)
        hidden, state = model.step_hidden(batch_tokens, parent_state)  # (N, D)
        row_of = {node: row for row, node in enumerate(nodes)}
        rows, targets, where = [], [], []
        for row, node in enumerate(nodes):
            for index, position in wanted.get(node, ()):
                rows.append(row)
                targets.append(sequences[index][position + 1])
                where.append((index, position))
        picked = model.logprobs_of(hidden[torch.tensor(rows, device=device)], torch.tensor(targets, device=device)).cpu().tolist()
        for (index, position), value in zip(where, picked):
            results[index][position] = value
    return [summarise(values) for values in results]
