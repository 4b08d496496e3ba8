"""One layer of a recurrent cell over a whole prefix tree (`models.prefix_scoring`), in
nn.RNN/GRU/LSTM's weight layout and gate order; a cell that the tree can run names its layer as
its `tree_layer` (`models.cells`).

The tree is run layer by layer, as cuDNN and oneDNN run a sequence: the input projection of
every node is one large matrix product, and only the recurrent product is left to the per-depth
loop, where a node starts from its parent's state (a row of the depth before). Small per-depth
products would make the tree slower than flat scoring; this keeps most of the arithmetic in one
efficient call.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

Blocks = list[tuple[int, int, "torch.Tensor | None"]]  # per depth: rows [start, end), parents' rows


class Inputs(NamedTuple):
    """A layer's inputs as distinct rows and, per node, which row it takes."""
    rows: torch.Tensor
    of_node: torch.Tensor


def _project(x: "torch.Tensor | Inputs", weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x W^T + b for every node, computed once per distinct input row."""
    if isinstance(x, Inputs):
        return torch.addmm(bias, x.rows, weight.t())[x.of_node]
    return torch.addmm(bias, x, weight.t())


def lstm_tree_layer(x: "torch.Tensor | Inputs", blocks: Blocks, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    hidden = w_hh.shape[1]
    projected = _project(x, w_ih, b_ih + b_hh)  # (N, 4H): gates i, f, g, o
    h_all = projected.new_empty(len(projected), hidden)
    c_all = projected.new_empty(len(projected), hidden)
    for start, end, parents in blocks:
        if parents is None:  # from the zero state
            gates, c_previous = projected[start:end], None
        else:
            gates = torch.addmm(projected[start:end], h_all[parents], w_hh.t())
            c_previous = c_all[parents]
        activated = torch.sigmoid(gates)
        cell_input = activated[:, :hidden] * torch.tanh(gates[:, 2 * hidden : 3 * hidden])
        c = cell_input if c_previous is None else torch.addcmul(cell_input, activated[:, hidden : 2 * hidden], c_previous)
        c_all[start:end] = c
        torch.mul(activated[:, 3 * hidden :], torch.tanh(c), out=h_all[start:end])
    return h_all


def gru_tree_layer(x: "torch.Tensor | Inputs", blocks: Blocks, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    hidden = w_hh.shape[1]
    projected = _project(x, w_ih, b_ih)  # (N, 3H): r, z, n
    h_all = projected.new_empty(len(projected), hidden)
    for start, end, parents in blocks:
        h_previous = projected.new_zeros(end - start, hidden) if parents is None else h_all[parents]
        recurrent = torch.addmm(b_hh, h_previous, w_hh.t())
        inputs = projected[start:end]
        reset_update = torch.sigmoid(inputs[:, : 2 * hidden] + recurrent[:, : 2 * hidden])
        new = torch.tanh(inputs[:, 2 * hidden :] + reset_update[:, :hidden] * recurrent[:, 2 * hidden :])
        h_all[start:end] = new + reset_update[:, hidden:] * (h_previous - new)
    return h_all


def rnn_tanh_tree_layer(x: "torch.Tensor | Inputs", blocks: Blocks, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    projected = _project(x, w_ih, b_ih + b_hh)
    h_all = projected.new_empty(len(projected), w_hh.shape[1])
    for start, end, parents in blocks:
        pre = projected[start:end] if parents is None else torch.addmm(projected[start:end], h_all[parents], w_hh.t())
        torch.tanh(pre, out=h_all[start:end])
    return h_all

