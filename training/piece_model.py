"""The piece model of a SentencePiece language model, trained on the corpus's training text
before the network (`train_lm --level sentencepiece`). It is kept in the run directory, so a
resumed run reads its text with the same pieces."""
from __future__ import annotations

import logging
from pathlib import Path

from models.tokenizers import Tokenizer, TokenizerConfig, make_tokenizer
from models.tokenizers.pieces import train_piece_model
from training.corpus import CorpusFiles

logger = logging.getLogger(__name__)
DEFAULT_PIECES = 8000


def training_lines(files: CorpusFiles) -> list[str]:
    """The lines the network trains on: a single-file corpus's valid share is left out."""
    lines = [line for line in files.train.read_text(encoding="utf-8").splitlines() if line.strip()]
    if files.valid is None and 0 < files.valid_fraction < 1:
        lines = lines[: int(len(lines) * (1 - files.valid_fraction))]
    return lines


def piece_tokenizer(config: TokenizerConfig, run_dir: Path, files: CorpusFiles, vocab_size: int | None,
                    model_type: str) -> Tokenizer:
    """The run's piece tokenizer, training its piece model first when the run has none."""
    path = run_dir / config.model_file
    if not path.is_file():
        size = vocab_size or DEFAULT_PIECES
        logger.info("training a %s piece model of %d pieces on %s", model_type, size, files.train)
        trained = train_piece_model(training_lines(files), run_dir / "pieces", size, model_type)
        trained.replace(path)
        (run_dir / "pieces.vocab").unlink(missing_ok=True)
    return make_tokenizer(config, run_dir)
