"""Int8 inference on the CPU that keeps every answer batch-independent.

`to_int8(network)` turns a language model's or a captioner decoder's recurrent layers (Elman,
GRU, LSTM) and output layer (full softmax, or the adaptive softmax's head and clusters, and the
tying projection) into int8 matrix products, in place. Embeddings, attention and everything else
stay fp32: they are a small share of a decode step and would only lose precision.

How a product runs (`Int8Linear`): weights are int8 with one scale per output channel. Each input
row is divided by its own absolute maximum, so every row lies in [-1, 1], and is quantized with
one fixed scale (2/255, zero point 128) by fbgemm's `linear_with_input_q_dq_qweight_dq_output_fp32`;
the fp32 output is multiplied back by the row's maximum and the bias is added in fp32. Nothing
depends on the other rows of the batch: the integer product is exact, and every scale is the
row's own or fixed, so a row gives the same bits alone or in any batch. (A dynamic per-tensor
activation scale would take its range from the whole batch; the fixed scale is what fbgemm's
dynamic product gives when a calibration row holding -1 and +1 is appended to the batch, without
the extra row.)

A recurrent layer is one product per step: [x, h] against [W_ih | W_hh] (for the GRU, whose
candidate gate multiplies the reset gate into W_hn h alone, the packed weight has four blocks:
r and z summed, then W_in x and W_hn h apart). Sequences (`run`) and prefix trees go through the
same per-step function, so reading a prompt at once, token by token or in a tree gives the same
state, and scoring equals generation's step.

Weights have 7 bits of magnitude (±63): fbgemm's AVX2 kernels add pairs of uint8 x int8 products
in saturating int16 arithmetic, and 8-bit activations with 8-bit weights overflow it (errors of
a large fraction of an output); 7-bit weights never do. (reduce_range, 7-bit activations
instead, measured worse.)

Why fbgemm and not torchao: torchao's `Int8DynamicActivationInt8WeightConfig` is per-token (so
batch-independent) and is where PyTorch's quantization is maintained, but on the CPU in eager
mode it multiplies through `aten::_int_mm` (or an int32 matmul), twenty times slower than fp32
here; its fast x86 path needs torch.compile with a static-activation graph. PyTorch marks the
quantized-tensor API that packs fbgemm's weights as deprecated; it is used in one function
(`_pack`), and `int8_available()` says whether this build has it, so a build without it serves
fp32 instead (docs/quantization.md).
"""
from __future__ import annotations

import hashlib
import warnings
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn

from models.captioning.decoder import CaptionDecoder
from models.cells import RecurrentCell, State
from models.rnn_lm import RNNLanguageModel
from models.tree_layers import Blocks, Inputs

FP32, INT8 = "fp32", "int8"
PRECISIONS = (FP32, INT8)
# Named in revisions: results computed another way must never come from the cache.
INT8_SCHEME = "fbgemm-w7-rowscaled-a8"
INT8_CELLS = ("rnn", "gru", "lstm")
WEIGHT_LEVELS = 63  # weights in [-63, 63]: see the module docstring
ACTIVATION_SCALE, ACTIVATION_ZERO_POINT = 2 / 255, 128  # [-1, 1] onto uint8
SMALLEST_SCALE = torch.finfo(torch.float32).tiny


def int8_available() -> bool:
    """Whether this PyTorch build has the fbgemm kernels `Int8Linear` runs on."""
    try:
        return "fbgemm" in torch.backends.quantized.supported_engines and bool(
            torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32.default)
    except (AttributeError, RuntimeError):
        return False


def precision_revision(revision: str, precision: str) -> str:
    """A model's revision at a precision: the weights' revision for fp32, otherwise one that
    also names the precision and how it is computed (cache keys include it)."""
    if precision == FP32:
        return revision
    return hashlib.sha256(f"{revision}:{precision}:{INT8_SCHEME}".encode()).hexdigest()


def resolve_precision(requested: str, recorded: str | None, quantizable: bool, on_cpu: bool) -> tuple[str, str | None]:
    """The precision a model is served at, and why it is not the one asked for (None when it
    is). `requested` is a setting ("auto": what the model's config.json records, fp32 when it
    records nothing); int8 needs a model type with recurrent layers, the CPU and fbgemm."""
    precision = (recorded or FP32) if requested == "auto" else requested
    if precision not in PRECISIONS:
        return FP32, f"unknown precision {precision!r}"
    if precision == INT8:
        if not quantizable:
            return FP32, "the model type has no int8 form"
        if not on_cpu:
            return FP32, "int8 runs on the CPU only"
        if not int8_available():
            return FP32, "this PyTorch build lacks fbgemm's int8 kernels"
    return precision, None


@contextmanager
def _fbgemm_engine():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def _pack(weight: torch.Tensor):
    """fbgemm's packed form of a (out, in) weight, per-channel symmetric with WEIGHT_LEVELS."""
    weight = weight.detach().float().cpu()
    scales = (weight.abs().amax(dim=1) / WEIGHT_LEVELS).clamp_min(1e-12).double()
    with warnings.catch_warnings(), _fbgemm_engine():
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)
        quantized = torch.quantize_per_channel(weight, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(quantized, None)


class Int8Linear(nn.Module):
    """y = x W^T + b with int8 W (per output channel) and each row of x quantized with its own
    scale: a row's result never depends on the other rows (module docstring)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self._packed = _pack(weight)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def of(cls, linear: nn.Linear) -> "Int8Linear":
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(SMALLEST_SCALE)  # a zero row stays zero
        y = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            rows / scale, ACTIVATION_SCALE, ACTIVATION_ZERO_POINT, self._packed)
        y = y * scale  # then the bias, not fused: the same bits in every kernel path
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


# One layer, one step: (layer's product, input (B, in), the layer's state) -> (output, state).
LayerStep = Callable[[Int8Linear, torch.Tensor, State], tuple[torch.Tensor, State]]


def _lstm_step(product: Int8Linear, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    h, c = state
    i, f, g, o = product(torch.cat([x, h], dim=1)).chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, (h, c)


def _gru_step(product: Int8Linear, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    (h,) = state
    hidden = h.size(1)
    out = product(torch.cat([x, h], dim=1))  # r and z summed | W_in x + b_in | W_hn h + b_hn
    reset, update = torch.sigmoid(out[:, : 2 * hidden]).chunk(2, dim=1)
    new = torch.tanh(out[:, 2 * hidden : 3 * hidden] + reset * out[:, 3 * hidden :])
    h = new + update * (h - new)
    return h, (h,)


def _tanh_step(product: Int8Linear, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    h = torch.tanh(product(torch.cat([x, state[0]], dim=1)))
    return h, (h,)


def _packed_layer(name: str, w_ih, w_hh, b_ih, b_hh) -> Int8Linear:
    """A layer's one product over [x, h] in the gate order its step function reads."""
    if name != "gru":
        return Int8Linear(torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh)
    hidden, inputs = w_hh.size(1), w_ih.size(1)
    rz = torch.cat([w_ih[: 2 * hidden], w_hh[: 2 * hidden]], dim=1)
    n_input = torch.cat([w_ih[2 * hidden :], w_ih.new_zeros(hidden, hidden)], dim=1)
    n_hidden = torch.cat([w_hh.new_zeros(hidden, inputs), w_hh[2 * hidden :]], dim=1)
    bias = torch.cat([b_ih[: 2 * hidden] + b_hh[: 2 * hidden], b_ih[2 * hidden :], b_hh[2 * hidden :]])
    return Int8Linear(torch.cat([rz, n_input, n_hidden]), bias)


STEPS: dict[str, LayerStep] = {"lstm": _lstm_step, "gru": _gru_step, "rnn": _tanh_step}


class Int8RecurrentLayers(RecurrentCell):
    """A stack of Elman, GRU or LSTM layers in int8, made from the fp32 cell (`models.cells`);
    what the language model and the decoder need of a cell, for inference: `step`, `run`, and
    the prefix tree's layer. Every path runs the same per-step function."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        if cell.name not in INT8_CELLS:
            raise ValueError(f"int8 covers the cells {', '.join(INT8_CELLS)}, not {cell.name!r}")
        self.name, self.title = cell.name, f"{cell.title}, int8"
        self.num_state_tensors = cell.num_state_tensors
        self.num_layers, self.hidden_size = cell.num_layers, cell.hidden_size
        self.layer_step = STEPS[cell.name]
        self.products = nn.ModuleList(_packed_layer(cell.name, *cell.layer_weights(layer)) for layer in range(cell.num_layers))

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        new_state: list[list[torch.Tensor]] = [[] for _ in range(self.num_state_tensors)]
        for layer, product in enumerate(self.products):
            x, layer_state = self.layer_step(product, x, tuple(s[layer] for s in state))
            for index, tensor in enumerate(layer_state):
                new_state[index].append(tensor)
        return x, tuple(torch.stack(tensors) for tensors in new_state)

    def run(self, x: torch.Tensor, state: State, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        # Step by step, the way generation reads a token: a row past its length keeps its state
        # and outputs zeros, as a packed sequence does.
        live = None if lengths is None else (torch.arange(x.size(1)).unsqueeze(1) < lengths.cpu().unsqueeze(0)).to(x.device)
        outputs = []
        for t in range(x.size(1)):
            output, stepped = self.step(x[:, t], state)
            if live is not None:
                keep = live[t].view(1, -1, 1)
                stepped = tuple(torch.where(keep, new, old) for new, old in zip(stepped, state))
                output = output * live[t].unsqueeze(1)
            outputs.append(output)
            state = stepped
        if not outputs:
            return x.new_zeros(x.size(0), 0, self.hidden_size), state
        return torch.stack(outputs, dim=1), state

    def layer_weights(self, layer: int):
        """What `tree_layer` takes for a layer: its index (the products are the module's)."""
        return (layer,)

    def tree_layer(self, x: "torch.Tensor | Inputs", blocks: Blocks, layer: int) -> torch.Tensor:
        """One layer over a prefix tree (`models.prefix_scoring`): a depth's nodes form one
        batch, each from its parent's state, through the layer's step."""
        inputs = x.rows[x.of_node] if isinstance(x, Inputs) else x
        product = self.products[layer]
        states = [inputs.new_empty(len(inputs), self.hidden_size) for _ in range(self.num_state_tensors)]
        for start, end, parents in blocks:
            if parents is None:  # from the zero state
                previous = tuple(inputs.new_zeros(end - start, self.hidden_size) for _ in states)
            else:
                previous = tuple(s[parents] for s in states)
            _, stepped = self.layer_step(product, inputs[start:end], previous)
            for target, value in zip(states, stepped):
                target[start:end] = value
        return states[0]


def _linear(module: nn.Module | None) -> nn.Module | None:
    return Int8Linear.of(module) if isinstance(module, nn.Linear) else module


def _cell(cell: RecurrentCell) -> RecurrentCell:
    return Int8RecurrentLayers(cell) if cell.name in INT8_CELLS and not isinstance(cell, Int8RecurrentLayers) else cell


def to_int8(network: nn.Module) -> nn.Module:
    """Quantize a language model (`models.rnn_lm.RNNLanguageModel`), a captioner or its decoder
    (`models.captioning.decoder.CaptionDecoder`) in place, for inference on the CPU. A cell
    without an int8 form (peephole, Jordan) stays fp32; the output layer is int8 all the same."""
    if next(network.parameters()).device.type != "cpu":
        raise ValueError("int8 runs on the CPU only")
    network.eval()
    with torch.no_grad():
        if isinstance(network, RNNLanguageModel):
            network.rnn = _cell(network.rnn)
            network.projection, network.decoder = _linear(network.projection), _linear(network.decoder)
            if network.adaptive is not None:
                network.adaptive.head = _linear(network.adaptive.head)
                for cluster in network.adaptive.tail:
                    for index, module in enumerate(cluster):
                        cluster[index] = _linear(module)
            return network
        decoder = network if isinstance(network, CaptionDecoder) else getattr(network, "decoder", None)
        if not isinstance(decoder, CaptionDecoder):
            raise ValueError(f"{type(network).__name__} has no int8 form")
        decoder.cell, decoder.output = _cell(decoder.cell), _linear(decoder.output)
    return network
