"""Data-parallel training under `torchrun`: one process per device, gradients averaged by
DistributedDataParallel (NCCL on GPUs, gloo on CPU).

    torchrun --nproc_per_node 4 -m training.train_lm --data ... --batch-size 64 ...

The global batch keeps its meaning: its rows (independent slices of the corpus stream) are
split across the processes, so with the same seed and no dropout a run on N processes takes
the same steps as a run on one. Only rank 0 writes checkpoints, metrics, plots and exports.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """Read what torchrun sets; a plain `python -m` run is a world of one."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))

    def start(self, device: torch.device) -> torch.device:
        """Join the process group; returns this process's device (its own GPU under torchrun)."""
        if not self.enabled:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if not self.is_main:
            logging.getLogger().setLevel(logging.WARNING)
        return device

    def rows(self, batch_size: int) -> slice:
        """This process's share of the global batch's rows."""
        if batch_size % self.world_size:
            raise SystemExit(f"--batch-size {batch_size} is not divisible by the {self.world_size} processes")
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        if not self.enabled:
            return module
        return torch.nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def broadcast_float(self, value: float, device: torch.device) -> float:
        """Rank 0's value on every rank (validation runs once, decisions stay in step)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


class LossModule(torch.nn.Module):
    """The language model's loss as `forward`, which DistributedDataParallel hooks into:
    (objective to minimise, cross-entropy to report, state); here the two are one."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, state):
        loss, state = self.model.loss(inputs, targets, state)
        return loss, loss.detach(), state
