"""The recurrent caption decoder: a recurrent cell (an LSTM by default; any cell of
`models.cells`) that starts from <bos> and writes until <eos>.

The image conditions it three ways (configurable): as the initial state (h0, c0 from the mean
feature), through a per-step term (the image vector enters every step's input, i.e.
h = f(Wxh·x + Whh·h + Wih·v)), and with soft attention over the spatial features (Show,
Attend and Tell: a gated context vector per step).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from models.cells import State, make_cell


@dataclass(frozen=True)
class CaptionDecoderConfig:
    vocab_size: int
    feature_dim: int
    embedding_dim: int = 256
    hidden_dim: int = 512
    attention_dim: int = 256  # 0: no attention, the image enters as its mean vector
    conditioning: Literal["init", "per_step", "both"] = "both"
    dropout: float = 0.5
    cell: str = "lstm"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "CaptionDecoderConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class DecoderState:
    recurrent: State  # the cell's state, as the language model's: a tuple of (1, B, H) tensors
    features: torch.Tensor  # (B, N, F)
    projected: torch.Tensor | None  # (B, N, A) attention keys, computed once per image
    image: torch.Tensor  # (B, F) mean feature

    @property
    def h(self) -> torch.Tensor:
        """(B, H): the cell's output state, which attention reads."""
        return self.recurrent[0][-1]

    def select(self, index: torch.Tensor) -> "DecoderState":
        """Rows `index` (beams are reordered or expanded)."""
        projected = None if self.projected is None else self.projected[index]
        return DecoderState(tuple(s[:, index] for s in self.recurrent), self.features[index], projected, self.image[index])


class CaptionDecoder(nn.Module):
    def __init__(self, config: CaptionDecoderConfig) -> None:
        super().__init__()
        self.config = config
        F, H, E, A = config.feature_dim, config.hidden_dim, config.embedding_dim, config.attention_dim
        self.embedding = nn.Embedding(config.vocab_size, E)
        self.init_h = nn.Linear(F, H)
        self.init_c = nn.Linear(F, H)
        input_dim = E
        self.image_input = None
        if config.attention_dim:
            self.attention_features = nn.Linear(F, A)
            self.attention_hidden = nn.Linear(H, A)
            self.attention_score = nn.Linear(A, 1)
            self.gate = nn.Linear(H, F)
            input_dim += F
        elif config.conditioning in ("per_step", "both"):
            self.image_input = nn.Linear(F, E)  # Wih·v, the per-step image term
            input_dim += E
        self.cell = make_cell(config.cell, input_dim, H)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(H, config.vocab_size)

    def init_state(self, features: torch.Tensor) -> DecoderState:
        """features (B, N, F) -> the state before <bos>."""
        image = features.mean(dim=1)
        batch = features.size(0)
        if self.config.conditioning in ("init", "both"):
            h, c = torch.tanh(self.init_h(image)), torch.tanh(self.init_c(image))
        else:
            h = c = features.new_zeros((batch, self.config.hidden_dim))
        projected = self.attention_features(features) if self.config.attention_dim else None
        recurrent = (h[None], c[None])[: self.cell.num_state_tensors]
        return DecoderState(recurrent, features, projected, image)

    def step(self, tokens: torch.Tensor, state: DecoderState) -> tuple[torch.Tensor, DecoderState, torch.Tensor | None]:
        """tokens (B,) -> logits (B, V), new state, attention weights (B, N) or None."""
        inputs = [self.dropout(self.embedding(tokens))]
        alpha = None
        if self.config.attention_dim:
            scores = self.attention_score(torch.tanh(state.projected + self.attention_hidden(state.h).unsqueeze(1)))
            alpha = scores.squeeze(2).softmax(dim=1)  # (B, N)
            context = (alpha.unsqueeze(2) * state.features).sum(dim=1)  # (B, F)
            inputs.append(torch.sigmoid(self.gate(state.h)) * context)
        elif self.image_input is not None:
            inputs.append(self.image_input(state.image))
        h, recurrent = self.cell.step(torch.cat(inputs, dim=1), state.recurrent)
        logits = self.output(self.dropout(h))
        return logits, DecoderState(recurrent, state.features, state.projected, state.image), alpha

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Decoders saved when the cell was an nn.LSTMCell name its tensors without the layer
        # suffix the cells of models.cells (nn.LSTM's layout) have.
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if f"{prefix}cell.{name}" in state_dict:
                state_dict[f"{prefix}cell.{name}_l0"] = state_dict.pop(f"{prefix}cell.{name}")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Teacher forcing: captions (B, T) begin with <bos>; logits (B, T-1, V) predict
        captions[:, 1:]. Also the attention weights (B, T-1, N) when attending."""
        state = self.init_state(features)
        logits, alphas = [], []
        for t in range(captions.size(1) - 1):
            step_logits, state, alpha = self.step(captions[:, t], state)
            logits.append(step_logits)
            if alpha is not None:
                alphas.append(alpha)
        return torch.stack(logits, dim=1), (torch.stack(alphas, dim=1) if alphas else None)
