"""Recurrent language model over any registered cell (`models.cells`: Elman RNN (tanh), GRU,
LSTM, peephole LSTM, Jordan network) with an explicit state.

    forward(tokens (B, T), state) -> (logits (B, T, V), state)

The state is always a tuple of (num_layers, B, hidden_dim) tensors: ``(h,)`` for the Elman RNN
and the GRU, ``(h, c)`` for the LSTMs, ``(y,)`` for the Jordan network, so callers (the
batching engine's slot table) treat all cells alike. Logits are raw and unnormalised; with the adaptive softmax head they are already
log-probabilities, which are valid logits for the same distribution.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from models.cells import CELLS, State, make_cell


@dataclass(frozen=True)
class LanguageModelConfig:
    vocab_size: int
    embedding_dim: int = 256
    hidden_dim: int = 256
    num_layers: int = 2
    cell: str = "lstm"  # a cell of the registry, models.cells.CELLS
    dropout: float = 0.2
    # Dropout on whole embedding rows (a word is dropped everywhere in the batch), as AWD-LSTM.
    embedding_dropout: float = 0.0
    tie_weights: bool = False
    # "linear": a full softmax layer; "adaptive": torch's adaptive softmax (cheaper to train on a
    # large vocabulary; its log_prob is still the exact normalised distribution).
    head: Literal["linear", "adaptive"] = "linear"
    adaptive_cutoffs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        if self.head not in ("linear", "adaptive"):
            raise ValueError(f"head must be 'linear' or 'adaptive', got {self.head!r}")
        if self.head == "adaptive" and self.tie_weights:
            raise ValueError("tie_weights is not supported with the adaptive head")
        if min(self.vocab_size, self.embedding_dim, self.hidden_dim, self.num_layers) < 1:
            raise ValueError("sizes must be positive")

    def to_json(self) -> dict:
        data = asdict(self)
        data["adaptive_cutoffs"] = list(self.adaptive_cutoffs)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "LanguageModelConfig":
        fields = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        fields["adaptive_cutoffs"] = tuple(fields.get("adaptive_cutoffs", ()))
        return cls(**fields)


class RNNLanguageModel(nn.Module):
    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.rnn = make_cell(config.cell, config.embedding_dim, config.hidden_dim, config.num_layers, config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        output_dim = config.hidden_dim
        # Tying needs the output layer's input to match the embedding width; project when the
        # recurrent layer is wider.
        self.projection: nn.Linear | None = None
        if config.tie_weights and config.hidden_dim != config.embedding_dim:
            self.projection = nn.Linear(config.hidden_dim, config.embedding_dim)
            output_dim = config.embedding_dim
        if config.head == "adaptive":
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(
                output_dim, config.vocab_size, list(config.adaptive_cutoffs), div_value=4.0
            )
            self.decoder = None
        else:
            self.adaptive = None
            self.decoder = nn.Linear(output_dim, config.vocab_size)
            if config.tie_weights:
                self.decoder.weight = self.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.decoder is not None:
            nn.init.zeros_(self.decoder.bias)
            if not self.config.tie_weights:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    @property
    def num_state_tensors(self) -> int:
        return self.rnn.num_state_tensors

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        device = device if device is not None else self.embedding.weight.device
        shape = (self.config.num_layers, batch_size, self.config.hidden_dim)
        return tuple(torch.zeros(shape, device=device) for _ in range(self.num_state_tensors))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, E); in training, with whole words dropped (`embedding_dropout`)."""
        weight = self.embedding.weight
        if self.training and self.config.embedding_dropout > 0:
            keep = 1 - self.config.embedding_dropout
            mask = weight.new_empty((weight.size(0), 1)).bernoulli_(keep) / keep
            weight = weight * mask
        return nn.functional.embedding(tokens, weight)

    def hidden(
        self, tokens: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """Top-layer outputs (B, T, D) before the output layer, and the new state.

        With `lengths` (B,), rows are right-padded and each row's state is taken after its own
        last token (outputs past a row's length are zeros).
        """
        if state is None:
            state = self.init_state(tokens.size(0), tokens.device)
        embedded = self.dropout(self.embed(tokens))  # (B, T, E)
        output, new_state = self.rnn.run(embedded, state, lengths)  # (B, T, H)
        output = self.dropout(output)
        if self.projection is not None:
            output = self.projection(output)
        return output, new_state

    def output_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., V) logits (log-probabilities for the adaptive head)."""
        if self.adaptive is not None:
            flat = hidden.reshape(-1, hidden.size(-1))
            return self.adaptive.log_prob(flat).view(*hidden.shape[:-1], -1)
        return self.decoder(hidden)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per row: tokens (B,) -> (logits (B, V), state), for decoding.

        Same math as `forward` on a length-1 sequence, through the cell's one-step path.
        """
        hidden, new_state = self.step_hidden(tokens, state)
        return self.output_logits(hidden), new_state

    @torch.inference_mode()
    def step_hidden(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """`step` before the output layer: tokens (B,) -> (top-layer output (B, D), state)."""
        if self.training:
            raise RuntimeError("step() is for inference; call eval() first")
        x, new_state = self.rnn.step(self.embedding(tokens), state)
        if self.projection is not None:
            x = self.projection(x)
        return x, new_state

    def logprobs_of(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) for each row of top-layer outputs (N, D) and its target (N,): the
        adaptive head reads only the head and the target's cluster."""
        hidden = hidden.float()
        if self.adaptive is not None:
            return self.adaptive(hidden, targets).output
        return self.decoder(hidden).float().log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1)

    def forward(
        self, tokens: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        hidden, new_state = self.hidden(tokens, state, lengths)
        return self.output_logits(hidden), new_state  # (B, T, V)

    def target_logprobs(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """log p(targets | tokens so far), (B, T), natural log (the adaptive head's cheap path)."""
        hidden, new_state = self.hidden(tokens, state)
        picked = self.logprobs_of(hidden.reshape(-1, hidden.size(-1)), targets.reshape(-1))
        return picked.view(targets.shape), new_state

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Mean cross-entropy in nats over all positions (cheap path for the adaptive head)."""
        hidden, new_state = self.hidden(tokens, state)
        return self.hidden_loss(hidden, targets), new_state

    def hidden_loss(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of top-layer outputs (B, T, D) against their targets (B, T)."""
        flat_hidden = hidden.reshape(-1, hidden.size(-1))
        if self.adaptive is not None:
            # The head's softmax runs in fp32 even under bf16 autocast: a bf16 loss is too
            # coarse (8 bits of mantissa) to train on.
            with torch.autocast(device_type=flat_hidden.device.type, enabled=False):
                return self.adaptive(flat_hidden.float(), targets.reshape(-1)).loss
        logits = self.decoder(flat_hidden)
        return nn.functional.cross_entropy(logits.float(), targets.reshape(-1))


def count_parameters(model: nn.Module) -> int:
    """Parameters, counting a tied tensor once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
