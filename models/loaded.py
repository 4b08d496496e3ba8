"""What every loaded model carries, whatever its type: the network, its vocabulary and
tokenizer, its config.json, its revision (sha256 of the weights) and where it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from models.rnn_lm import count_parameters
from models.tokenizers import Tokenizer
from models.vocab import Vocabulary


@dataclass
class LoadedModel:
    model_type: ClassVar[str]

    model_id: str
    model: Any
    vocab: Vocabulary
    tokenizer: Tokenizer
    config: dict[str, Any]
    revision: str
    path: Path
    spelling: Any = None  # models.spelling.SpellingModel of a word model, when it has one
    precision: str = "fp32"  # models.quantization.PRECISIONS
    parameters: int = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = self.count_parameters()

    def count_parameters(self) -> int:
        return count_parameters(self.model)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.config.get("metrics", {}))
