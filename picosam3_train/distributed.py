"""torch.distributed for training: one process per device under ``torchrun``, none without it.

``torchrun`` (or SLURM/Kubernetes through torchrun's rendezvous) sets ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; with a world of more than one process,
``init_distributed`` joins the process group (NCCL on CUDA, gloo on CPU) and each
process trains on its own device. Without them, ``Distributed()`` is the single process
and every collective below is the identity, so a plain ``picosam3_train train`` runs
the same code with no process group.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# The first run of a job decodes the dataset into the crop store on one process per node
# while the others wait at a barrier: allow for a full COCO decode.
PROCESS_GROUP_TIMEOUT = dt.timedelta(hours=3)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def agree(self, value: float) -> float:
        """Rank 0's value on every rank (e.g. elapsed time, so that all stop at the same step)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=_collective_device())
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Mean over ranks of a few floats (losses for the log)."""
        if not self.enabled:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return {k: float(v) / self.world_size for k, v in zip(keys, tensor.tolist())}

    def gather(self, value: object) -> list[object]:
        """Every rank's (picklable) value, in rank order."""
        if not self.enabled:
            return [value]
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_distributed(device: str) -> tuple[Distributed, torch.device | None]:
    """Join the process group when launched by torchrun with more than one process.

    ``device`` is the config's (auto, cpu, cuda): under torchrun each process takes
    ``cuda:LOCAL_RANK`` when CUDA is used. Returns no device for a single process
    (the trainer picks it as it always has)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), None
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but CUDA is not available")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        torch_device = torch.device("cuda", local_rank)
    else:
        torch_device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=PROCESS_GROUP_TIMEOUT)
    return Distributed(rank, local_rank, world), torch_device


def shutdown_distributed(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
