"""Process-group helpers: one code path for 1 CPU process, N CPU processes (gloo) and N GPUs (nccl).

Launch many processes with ``torchrun --nproc_per_node N -m hoikit.cli train CONFIG``; torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, which
:func:`init_distributed` reads. Without them everything here degrades to single-process no-ops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import torch
import torch.distributed as dist

from ..errors import ConfigError


@dataclass
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 = main process, the only one that logs and writes files).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: torch device this process computes on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


DEVICE_NAMES = "auto | cpu | cuda | gpu | cuda:N | mps"


def available_devices() -> List[str]:
    """The devices this machine offers: ``cpu``, then ``cuda:0`` ... and ``mps`` when present."""
    found = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    mps = getattr(torch.backends, "mps", None)
    return found + (["mps"] if mps is not None and mps.is_available() else [])


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when a GPU is visible, else ``cpu``; ``gpu`` = ``cuda``.

    Raises:
        ConfigError: an unknown name, or a device this machine does not have (the line lists those it has).
    """
    given = name
    name = str(name).strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "gpu":
        name = "cuda"
    here = available_devices()
    try:
        dev = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device '{given}' is not one of {DEVICE_NAMES} (this machine has: {', '.join(here)})") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device '{given}' is not one of {DEVICE_NAMES} (this machine has: {', '.join(here)})")
    if dev.type != "cpu" and ("mps" if dev.type == "mps" else f"cuda:{dev.index or 0}") not in here:
        why = "CUDA is not available" if dev.type == "cuda" and not torch.cuda.is_available() else "no such device"
        raise ConfigError(f"device '{given}': {why} on this machine (it has: {', '.join(here)}); use cpu or auto")
    return dev


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the default process group when launched by torchrun (env ``WORLD_SIZE`` > 1).

    Backend: nccl on GPU, gloo on CPU. Safe to call twice.

    Args:
        device: ``auto`` | ``cpu`` | ``cuda`` (``cfg.train.device``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all processes (a copy; ``t`` itself is unchanged)."""
    t = t.detach().clone()
    if is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over all processes."""
    return all_reduce_sum(t) / get_world_size()


def reduce_dict(values: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Mean of every scalar in ``values`` over processes, as Python floats (for logging).

    Keys are sorted so every rank reduces the same tensor layout.
    """
    if not values:
        return {}
    keys = sorted(values)
    stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
    stacked = all_reduce_mean(stacked)
    return {k: float(v) for k, v in zip(keys, stacked.cpu())}


def any_true_each(flags: Sequence[bool], device: torch.device = torch.device("cpu")) -> List[bool]:
    """For each flag, True when it is True on any process, all flags in one collective (every rank
    passes as many; e.g. a failed forward or a non-finite loss on one rank stops all)."""
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    return [bool(v > 0) for v in all_reduce_sum(t).cpu()]


def all_gather_objects(obj: Any) -> List[Any]:
    """List with every process's ``obj`` in rank order (``[obj]`` without a process group)."""
    if not is_initialized():
        return [obj]
    out: List[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every process."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(
        model, torch.nn.parallel.DistributedDataParallel) else model
