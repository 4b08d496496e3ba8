"""Recurrent cells, one module per type, registered by name and used alike by the language
model (and anything else that runs a stack of recurrent layers).

Every cell is a stack of `num_layers` layers with dropout between them, and offers

    run(x (B, T, E), state, lengths=None) -> (output (B, T, H), state)
    step(x (B, E), state)                  -> (output (B, H), state)

where the state is a tuple of `num_state_tensors` tensors of shape (num_layers, B, H). With
`lengths` (B,), rows are right-padded and each row's state is the one after its own last input.

* ``rnn``, ``gru``, ``lstm``: PyTorch's fused layers (cuDNN / oneDNN) for whole sequences and
  the fused one-step cell functions for decoding.
* ``peephole``: the LSTM of Gers & Schmidhuber (2000), whose gates also see the cell state.
* ``jordan``: a Jordan network, whose recurrence reads the previous step's output, not its
  hidden state.

What else is known of a cell is a class attribute of its module, read through `CELLS` (the
registry): its name in tables, the fused PyTorch module that can run one of its layers, its
layer over a prefix tree, whether the cell comparison trains it by default.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import torch
from torch import nn

from models.tree_layers import gru_tree_layer, lstm_tree_layer, rnn_tanh_tree_layer

State = tuple[torch.Tensor, ...]
# The four tensors of one layer in nn.RNN's layout: what a prefix tree runs layer by layer.
LayerWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class RecurrentCell(nn.Module):
    """What the language model needs of a recurrent stack (see the module docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]  # how tables and plots name the cell
    num_state_tensors: ClassVar[int] = 1
    # The PyTorch module whose single layer runs one of the cell's layers from `layer_weights`
    # (AWD regularisation runs the stack layer by layer through it); None for a cell PyTorch lacks.
    fused_module: ClassVar[type[nn.RNNBase] | None] = None
    # One layer over a prefix tree (`models.tree_layers`), as a staticmethod; None: a prefix tree
    # cannot run the cell, and shared prefixes are scored one sequence at a time.
    tree_layer: ClassVar[Callable | None] = None
    # Whether `training.compare_cells` trains the cell when not told which cells to compare.
    in_default_comparison: ClassVar[bool] = True

    def run(self, x: torch.Tensor, state: State, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def layer_weights(self, layer: int) -> LayerWeights | None:
        """The layer's weights in nn.RNN's layout, what `fused_module` and `tree_layer` read;
        None for a cell with other weights."""
        return None


class _TorchCell(RecurrentCell):
    """Shared by the cells PyTorch implements. The subclasses are also nn.RNN/GRU/LSTM, so the
    parameters keep those modules' names (weight_ih_l0, ...) in saved weights."""

    step_function: ClassVar[Callable]
    num_layers: int

    def run(self, x, state, lengths=None):
        torch_state = state if self.num_state_tensors == 2 else state[0]
        if lengths is None:
            output, new_state = self(x, torch_state)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            packed_output, new_state = self(packed, torch_state)
            output, _ = nn.utils.rnn.pad_packed_sequence(packed_output, batch_first=True, total_length=x.size(1))
        return output, tuple(new_state) if self.num_state_tensors == 2 else (new_state,)

    def step(self, x, state):
        # The fused one-step functions, layer by layer: for one time step this avoids the
        # module's per-call set-up (and oneDNN's), several times the arithmetic at small batches.
        new_state: list[list[torch.Tensor]] = [[] for _ in range(self.num_state_tensors)]
        for layer in range(self.num_layers):
            layer_state = tuple(s[layer] for s in state)
            out = type(self).step_function(x, layer_state if len(layer_state) == 2 else layer_state[0], *self.layer_weights(layer))
            out = out if isinstance(out, tuple) else (out,)
            for index, tensor in enumerate(out):
                new_state[index].append(tensor)
            x = out[0]
        return x, tuple(torch.stack(tensors) for tensors in new_state)

    def layer_weights(self, layer):
        return tuple(getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


class ElmanCell(_TorchCell, nn.RNN):
    name = "rnn"
    title = "Elman RNN (tanh)"
    fused_module = nn.RNN
    tree_layer = staticmethod(rnn_tanh_tree_layer)
    step_function = torch.rnn_tanh_cell


class GRUCell(_TorchCell, nn.GRU):
    name = "gru"
    title = "GRU"
    fused_module = nn.GRU
    tree_layer = staticmethod(gru_tree_layer)
    step_function = torch.gru_cell


class LSTMCell(_TorchCell, nn.LSTM):
    name = "lstm"
    title = "LSTM"
    num_state_tensors = 2
    fused_module = nn.LSTM
    tree_layer = staticmethod(lstm_tree_layer)
    step_function = torch.lstm_cell


class _LoopedCell(RecurrentCell):
    """A cell written out in PyTorch operations, run layer by layer as cuDNN runs a sequence:
    one matrix product projects a layer's inputs at every time step, and only the recurrent
    part loops over time. Slower than the fused cells all the same (no fused kernel), the price
    of a cell they lack."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 batch_first: bool = True) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("cells take batch-first inputs")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.inter_layer_dropout = nn.Dropout(dropout if num_layers > 1 else 0.0)
        for layer in range(num_layers):
            self.make_layer(layer, input_size if layer == 0 else hidden_size)
        self.reset_parameters()

    def make_layer(self, layer: int, input_size: int) -> None:
        raise NotImplementedError

    def project(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """The layer's input term W_ih x + b for inputs (..., in), biases folded in."""
        w_ih, b_ih, b_hh = self._weights(layer, "weight_ih", "bias_ih", "bias_hh")
        return torch.nn.functional.linear(x, w_ih, b_ih + b_hh)

    def recur(self, layer: int, projected: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One layer, one time step from its projected input (B, G) and state: output (B, H)
        and the layer's new state."""
        raise NotImplementedError

    def reset_parameters(self) -> None:
        # nn.RNN's initialisation: uniform in ±1/sqrt(hidden).
        bound = self.hidden_size ** -0.5
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def _parameter(self, name: str, layer: int, *shape: int) -> None:
        self.register_parameter(f"{name}_l{layer}", nn.Parameter(torch.empty(*shape)))

    def _weights(self, layer: int, *names: str) -> list[torch.Tensor]:
        return [getattr(self, f"{name}_l{layer}") for name in names]

    def step(self, x, state):
        new_state: list[list[torch.Tensor]] = [[] for _ in range(self.num_state_tensors)]
        for layer in range(self.num_layers):
            if layer:
                x = self.inter_layer_dropout(x)
            x, layer_state = self.recur(layer, self.project(layer, x), tuple(s[layer] for s in state))
            for index, tensor in enumerate(layer_state):
                new_state[index].append(tensor)
        return x, tuple(torch.stack(tensors) for tensors in new_state)

    def run(self, x, state, lengths=None):
        # A row past its length keeps its state (so the state returned is the one after its own
        # last input) and outputs zeros, as a packed sequence does.
        live = None if lengths is None else (torch.arange(x.size(1)).unsqueeze(1) < lengths.cpu().unsqueeze(0)).to(x.device)
        new_state: list[list[torch.Tensor]] = [[] for _ in range(self.num_state_tensors)]
        for layer in range(self.num_layers):
            if layer:
                x = self.inter_layer_dropout(x)
            projected = self.project(layer, x)  # (B, T, G): every time step in one product
            layer_state = tuple(s[layer] for s in state)
            outputs = []
            for t in range(x.size(1)):
                output, stepped = self.recur(layer, projected[:, t], layer_state)
                if live is not None:
                    keep = live[t].unsqueeze(1)
                    stepped = tuple(torch.where(keep, new, old) for new, old in zip(stepped, layer_state))
                    output = output * keep
                outputs.append(output)
                layer_state = stepped
            x = torch.stack(outputs, dim=1)
            for index, tensor in enumerate(layer_state):
                new_state[index].append(tensor)
        return x, tuple(torch.stack(tensors) for tensors in new_state)


class PeepholeLSTMCell(_LoopedCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000; Gers, Schraudolph & Schmidhuber
    2002): the input and forget gates see the previous cell state c_{t-1}, the output gate the
    new one c_t, through diagonal (per-unit) weights, which lets the cell time its gates on its
    own contents rather than only through h = o * tanh(c):

        i = σ(W_i x + U_i h + p_i ⊙ c_{t-1} + b_i)     f = σ(W_f x + U_f h + p_f ⊙ c_{t-1} + b_f)
        g = tanh(W_g x + U_g h + b_g)                 c_t = f ⊙ c_{t-1} + i ⊙ g
        o = σ(W_o x + U_o h + p_o ⊙ c_t + b_o)         h_t = o ⊙ tanh(c_t)

    Weights are in nn.LSTM's layout (gates i, f, g, o) plus weight_ch (3, H): p_i, p_f, p_o.
    """

    name = "peephole"
    title = "Peephole LSTM"
    num_state_tensors = 2

    def make_layer(self, layer, input_size):
        hidden = self.hidden_size
        self._parameter("weight_ih", layer, 4 * hidden, input_size)
        self._parameter("weight_hh", layer, 4 * hidden, hidden)
        self._parameter("bias_ih", layer, 4 * hidden)
        self._parameter("bias_hh", layer, 4 * hidden)
        self._parameter("weight_ch", layer, 3, hidden)

    def recur(self, layer, projected, state):
        h, c = state
        w_hh, peep = self._weights(layer, "weight_hh", "weight_ch")
        i, f, g, o = torch.addmm(projected, h, w_hh.t()).chunk(4, dim=1)
        i = torch.sigmoid(i + peep[0] * c)
        f = torch.sigmoid(f + peep[1] * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + peep[2] * c)
        h = o * torch.tanh(c)
        return h, (h, c)


class JordanCell(_LoopedCell):
    """A Jordan network (Jordan 1986): the recurrence is fed the previous step's output, not
    the hidden state as in Elman's network:

        h_t = tanh(W_ih x_t + W_hh y_{t-1} + b)       y_t = tanh(W_hy h_t + b_y)

    Which output: each layer's output y, the vector the next layer reads and, at the top, the
    softmax reads. Jordan fed back the network's final output; for a language model that is a
    distribution over the whole vocabulary, which would cost a vocabulary-sized product each
    step and mostly repeat the next input word (which the model reads anyway). Its summary just
    before the softmax carries the same information in H numbers. The state is y.
    """

    name = "jordan"
    title = "Jordan RNN"

    def make_layer(self, layer, input_size):
        hidden = self.hidden_size
        self._parameter("weight_ih", layer, hidden, input_size)
        self._parameter("weight_hh", layer, hidden, hidden)
        self._parameter("bias_ih", layer, hidden)
        self._parameter("bias_hh", layer, hidden)
        self._parameter("weight_hy", layer, hidden, hidden)
        self._parameter("bias_hy", layer, hidden)

    def recur(self, layer, projected, state):
        (y,) = state
        w_hh, w_hy, b_hy = self._weights(layer, "weight_hh", "weight_hy", "bias_hy")
        h = torch.tanh(torch.addmm(projected, y, w_hh.t()))
        y = torch.tanh(torch.addmm(b_hy, h, w_hy.t()))
        return y, (y,)


# In the order the cell comparison's table lists them: the plain recurrences, then the gated ones.
CELLS: dict[str, type[RecurrentCell]] = {
    cell.name: cell for cell in (ElmanCell, JordanCell, GRUCell, LSTMCell, PeepholeLSTMCell)
}


def make_cell(name: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> RecurrentCell:
    if name not in CELLS:
        raise ValueError(f"cell must be one of {sorted(CELLS)}, got {name!r}")
    return CELLS[name](input_size, hidden_size, num_layers=num_layers, dropout=dropout if num_layers > 1 else 0.0,
                       batch_first=True)
