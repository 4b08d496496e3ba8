"""A batch's next-token distributions, computed only as far as they are read.

Generation needs the whole distribution only for what reads all of it (log-probabilities shown
to the user, temperature, top-k, top-p). Plain sampling and argmax can read an adaptive
softmax the way it is built: the head (the frequent words and one entry per cluster of rarer
words) for every row, and a cluster's own layer only for the rows that land in that cluster.
"""
from __future__ import annotations

import torch

from models.rnn_lm import RNNLanguageModel


class NextTokenScores:
    """Top-layer outputs (B, D) of a batch and, once asked for, their logits (B, V)
    (log-probabilities with the adaptive head)."""

    def __init__(self, model: RNNLanguageModel, hidden: torch.Tensor, logits: torch.Tensor | None = None) -> None:
        self.model, self.hidden, self._logits = model, hidden, logits

    @property
    def logits(self) -> torch.Tensor:
        if self._logits is None:
            with torch.inference_mode():
                self._logits = self.model.output_logits(self.hidden)
        return self._logits

    @property
    def by_cluster(self) -> bool:
        """Whether the head and each cluster can be read on their own (an adaptive head whose
        full logits were not needed yet)."""
        return self.model.adaptive is not None and self._logits is None

    @property
    def shortlist_size(self) -> int:
        return self.model.adaptive.shortlist_size

    def head_probabilities(self) -> torch.Tensor:
        """(B, shortlist + clusters): the frequent words' probabilities, then each cluster's mass."""
        with torch.inference_mode():
            return self.model.adaptive.head(self.hidden.float()).softmax(dim=-1)

    def cluster(self, index: int, rows: torch.Tensor) -> tuple[int, torch.Tensor]:
        """(first token id, probabilities within the cluster (len(rows), size)) of cluster `index`."""
        adaptive = self.model.adaptive
        with torch.inference_mode():
            within = adaptive.tail[index](self.hidden[rows].float()).softmax(dim=-1)
        return adaptive.cutoffs[index], within

    def filter(self, keep: torch.Tensor) -> "NextTokenScores":
        """The rows `keep` (rows leave a batch)."""
        return NextTokenScores(self.model, self.hidden[keep], None if self._logits is None else self._logits[keep])

    def concatenate(self, other: "NextTokenScores") -> "NextTokenScores":
        """These rows followed by `other`'s (rows join a running batch)."""
        logits = torch.cat([self._logits, other._logits]) if self._logits is not None and other._logits is not None else None
        return NextTokenScores(self.model, torch.cat([self.hidden, other.hidden]), logits)
