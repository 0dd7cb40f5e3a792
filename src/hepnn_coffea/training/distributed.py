"""Multi-process training with torch DistributedDataParallel, launched by ``torchrun``.

``torchrun --nproc_per_node 2 -m hepnn_coffea.cli train models/pfn.yaml --shards S -o RUN``
starts one process per rank; :func:`init_distributed` reads torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and joins the process group with ``gloo``
on CPU or ``nccl`` on CUDA. Every rank draws the same seeded epoch permutation and
takes its own strided share of it; only rank 0 writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hepnn_coffea._optional import missing_extra

try:
    import torch
    import torch.distributed as dist
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda > mps > cpu."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE > 1``; returns this rank's info."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=world)
    return info


def shard_index(index: np.ndarray, info: DistInfo) -> np.ndarray:
    """This rank's strided share of an epoch's row order (equal length on every rank)."""
    if not info.enabled:
        return index
    per_rank = len(index) // info.world_size
    return index[info.rank :: info.world_size][:per_rank]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
