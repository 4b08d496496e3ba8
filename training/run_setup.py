"""What every training CLI does first: a run directory, logging to the console and to
RUN_DIR/train.log, and the CPU thread count."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch


def prepare_run(run_dir: Path, threads: int | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(run_dir / "train.log")])
    if threads:
        torch.set_num_threads(threads)
