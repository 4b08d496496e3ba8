"""What every training CLI does first: a run directory, logging to the console and to
RUN_DIR/train.log, and the CPU thread count."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def prepare_run(run_dir: Path, threads: int | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format=FORMAT, handlers=[logging.StreamHandler(sys.stderr)])
    # One run's log file at a time, also when a driver (compare_cells) trains several in turn.
    for handler in [h for h in root.handlers if getattr(h, "rnnserve_run_log", False)]:
        root.removeHandler(handler)
        handler.close()
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)  # the log file records progress even when something else configured logging
    file_handler = logging.FileHandler(run_dir / "train.log")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    file_handler.rnnserve_run_log = True
    root.addHandler(file_handler)
    if threads:
        torch.set_num_threads(threads)


def bf16_recurrence_supported(device: torch.device) -> bool:
    """Whether the device runs a recurrent layer under bf16 autocast. On CPUs oneDNN needs
    bf16 instructions (AVX-512 BF16 or AMX) for its LSTM primitive; without them the first
    forward pass raises deep inside training, so this probes with a tiny layer first."""
    try:
        layer = torch.nn.LSTM(4, 4, batch_first=True).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            layer(torch.zeros(1, 2, 4, device=device))
    except RuntimeError:
        return False
    return True
