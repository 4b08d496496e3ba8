"""AWD-LSTM's regularisation (Merity, Keskar & Socher, "Regularizing and Optimizing LSTM Language
Models", 2018), applied while training only.

* weight drop: DropConnect on each layer's hidden-to-hidden matrix, one mask per batch (the
  recurrence sees the same dropped matrix at every time step, and cuDNN's fused kernel still runs);
* variational (locked) dropout: one mask per sequence, the same at every time step, on the
  embeddings, between layers and on the top layer's output;
* embedding dropout: whole words dropped from the embedding matrix (the model's own
  `embedding_dropout`);
* activation (AR) and temporal activation (TAR) penalties on the top layer's outputs.

Nothing here changes the model's parameters or their names: the export is a plain
`RNNLanguageModel` and serves like any other (DropConnect's expectation is the undropped matrix,
so inference uses the trained weights as they are).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from models.cells import CELLS
from models.rnn_lm import RNNLanguageModel

# The cells whose layers run as PyTorch's fused modules, one layer at a time here.
FUSED_CELLS = tuple(name for name, cell in CELLS.items() if cell.fused_module is not None)


@dataclass(frozen=True)
class AWDRegularisation:
    weight_drop: float = 0.5
    input_dropout: float = 0.65
    hidden_dropout: float = 0.3
    output_dropout: float = 0.4
    activation_penalty: float = 2.0  # AR: alpha * mean(dropped top output ** 2)
    temporal_penalty: float = 1.0  # TAR: beta * mean((h_t - h_{t-1}) ** 2), undropped

    def __post_init__(self) -> None:
        for name in ("weight_drop", "input_dropout", "hidden_dropout", "output_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if self.activation_penalty < 0 or self.temporal_penalty < 0:
            raise ValueError("the activation penalties must not be negative")


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout on (B, T, D) with one mask per sequence and feature, shared by all time steps."""
    if not training or p == 0.0:
        return x
    mask = x.new_empty((x.size(0), 1, x.size(2))).bernoulli_(1 - p) / (1 - p)
    return x * mask


class AWDLoss(nn.Module):
    """The training objective under AWD regularisation: forward(inputs, targets, state) ->
    (objective, cross-entropy, state), like `training.distributed.LossModule`."""

    def __init__(self, model: RNNLanguageModel, regularisation: AWDRegularisation) -> None:
        super().__init__()
        module = model.rnn.fused_module
        if module is None:
            raise ValueError(f"AWD regularisation needs a fused cell ({', '.join(FUSED_CELLS)}), "
                             f"not {model.config.cell!r}")
        self.model = model
        self.regularisation = regularisation
        config = model.config
        # One single-layer module per distinct input width, kept out of the parameter list (it
        # holds no weights of its own: every call passes the stack's weights for that layer).
        widths = {config.embedding_dim, config.hidden_dim}
        self._layer_runner = {
            width: module(width, config.hidden_dim, 1, batch_first=True, device="meta") for width in widths
        }

    def _run_layer(self, layer: int, x: torch.Tensor, state: tuple[torch.Tensor, ...]):
        weight_ih, weight_hh, bias_ih, bias_hh = self.model.rnn.layer_weights(layer)
        weights = {
            "weight_ih_l0": weight_ih,
            "weight_hh_l0": nn.functional.dropout(weight_hh, self.regularisation.weight_drop, self.training),
            "bias_ih_l0": bias_ih,
            "bias_hh_l0": bias_hh,
        }
        layer_state = tuple(s[layer : layer + 1] for s in state)
        runner = self._layer_runner[x.size(-1)]
        output, new_state = functional_call(runner, weights, (x, layer_state if len(layer_state) == 2 else layer_state[0]))
        return output, tuple(new_state) if isinstance(new_state, tuple) else (new_state,)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, state):
        model, reg = self.model, self.regularisation
        if state is None:
            state = model.init_state(inputs.size(0), inputs.device)
        x = locked_dropout(model.embed(inputs), reg.input_dropout, self.training)
        layer_states: list[tuple[torch.Tensor, ...]] = []
        num_layers = model.config.num_layers
        raw_output = x
        for layer in range(num_layers):
            raw_output, layer_state = self._run_layer(layer, x, state)
            layer_states.append(layer_state)
            last = layer == num_layers - 1
            x = locked_dropout(raw_output, reg.output_dropout if last else reg.hidden_dropout, self.training)
        new_state = tuple(torch.cat(tensors) for tensors in zip(*layer_states))
        top = model.projection(x) if model.projection is not None else x
        cross_entropy = model.hidden_loss(top, targets)
        objective = cross_entropy
        if self.training and reg.activation_penalty:
            objective = objective + reg.activation_penalty * x.pow(2).mean()
        if self.training and reg.temporal_penalty and raw_output.size(1) > 1:
            objective = objective + reg.temporal_penalty * (raw_output[:, 1:] - raw_output[:, :-1]).pow(2).mean()
        return objective, cross_entropy.detach(), new_state


class NonMonotoneAveraging:
    """NT-ASGD's trigger and average: plain SGD until the validation loss has not beaten the best
    of the epochs before the last `nonmono` ones, then a running average of the weights after
    every step, which validation and the export use from then on."""

    def __init__(self, nonmono: int = 5) -> None:
        if nonmono < 1:
            raise ValueError("nonmono must be at least 1")
        self.nonmono = nonmono
        self.valid_losses: list[float] = []
        self.averaged: torch.optim.swa_utils.AveragedModel | None = None

    @property
    def averaging(self) -> bool:
        return self.averaged is not None

    def after_step(self, model: nn.Module) -> None:
        if self.averaged is not None:
            self.averaged.update_parameters(model)

    def after_validation(self, valid_loss: float, model: nn.Module) -> bool:
        """Record an epoch's validation loss; True when this epoch starts the averaging."""
        history = self.valid_losses
        history.append(valid_loss)
        if self.averaged is None and len(history) > self.nonmono + 1 and valid_loss > min(history[: -self.nonmono - 1]):
            self.averaged = torch.optim.swa_utils.AveragedModel(model)
            return True
        return False

    def model_for_evaluation(self, model: nn.Module) -> nn.Module:
        return self.averaged.module if self.averaged is not None else model

    def state_dict(self) -> dict:
        return {"nonmono": self.nonmono, "valid_losses": list(self.valid_losses),
                "averaged": self.averaged.state_dict() if self.averaged is not None else None}

    def load_state_dict(self, state: dict, model: nn.Module) -> None:
        self.nonmono = state["nonmono"]
        self.valid_losses = list(state["valid_losses"])
        if state["averaged"] is not None:
            self.averaged = torch.optim.swa_utils.AveragedModel(model)
            self.averaged.load_state_dict(state["averaged"])
