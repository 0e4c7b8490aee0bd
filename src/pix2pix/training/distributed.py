"""Data-parallel training over several processes: torchrun + DistributedDataParallel.

    torchrun --nproc-per-node 4 -m pix2pix train --data DIR ...

torchrun starts one process per GPU and sets RANK, LOCAL_RANK and WORLD_SIZE; `setup` reads them,
joins the process group (nccl on GPUs, gloo on the CPU) and pins the process to GPU LOCAL_RANK.
Every process holds a full copy of G and D and trains on its own `batch_size` images of each
step; DDP averages the gradients over the processes, so one step is one step on the global batch
of batch_size x WORLD_SIZE images. With WORLD_SIZE unset or 1 nothing here does anything.
"""

from __future__ import annotations

import copy
import gc
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This process's place among the training processes; World() is a single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the GPU of this process on its machine
    owns_group: bool = False  # setup() created the process group, so teardown() destroys it

    @property
    def main(self) -> bool:
        """Rank 0 alone writes the run directory and shows the progress bar."""
        return self.rank == 0


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes in the environment (or use one a caller
    already initialised) and return this process's place and device; a single process when
    WORLD_SIZE is unset or 1."""
    if dist.is_available() and dist.is_initialized():
        rank, size, owns = dist.get_rank(), dist.get_world_size(), False
    else:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return World(), device
        rank, owns = int(os.environ["RANK"]), True
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if device.index is not None and device.index != local_rank:
            raise ValueError(
                f"device {device} with {size} processes: each process uses the GPU of its LOCAL_RANK; "
                "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=size)
    return World(rank, size, local_rank, owns), device


def is_main_process() -> bool:
    """Rank 0 (or the only process), known before `setup`: from the initialised group or torchrun's RANK."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def teardown(world: World, device: torch.device, wait: bool = True) -> None:
    """Wait until every process is done (so rank 0's last checkpoint is on disk when train()
    returns anywhere), then leave the process group if setup() joined it. After an error
    (`wait` False) it leaves at once: the others may never get here, and torchrun stops them
    when one process fails."""
    if world.size == 1:
        return
    # DDP wrappers sit in reference cycles: free them (and their gradient reducers) now, while
    # the process group still exists; collected later, after the group is gone, a reducer's
    # threads can abort the process at exit ("terminate called without an active exception")
    gc.collect()
    if wait:
        barrier(device)
    if world.owns_group:
        dist.destroy_process_group()


def barrier(device: torch.device) -> None:
    if dist.is_initialized():
        # nccl wants to know the GPU, or it guesses and warns
        dist.barrier(device_ids=[device.index]) if device.type == "cuda" else dist.barrier()


def sync_batchnorm(module: nn.Module, world: World, device: torch.device, enabled: bool) -> nn.Module:
    """`module` with its BatchNorm layers synchronised over the processes, if `enabled` and there
    are several; the same weights and state-dict keys. Do it before building the optimiser, which
    must hold the parameters that train."""
    if world.size == 1 or not enabled:
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _swap_batchnorm(module, nn.BatchNorm2d, CpuSyncBatchNorm)  # torch's kernels are GPU-only


def wrap(module: nn.Module | None, world: World, device: torch.device) -> nn.Module | None:
    """`module` (a model, or a compiled one: compile first, then wrap, as nanoGPT does) in
    DistributedDataParallel; the module itself for a single process. DDP copies rank 0's weights
    to every process here, so load them first."""
    if world.size == 1 or module is None:
        return module
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside DDP: its state dict has no `module.` prefix, and calling it runs the
    forward without arming DDP's gradient sync."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def for_one_process(module: nn.Module) -> nn.Module:
    """The model for work one process does alone (the sample grids): the module inside DDP or,
    if its BatchNorm layers are synchronised, a copy with ordinary ones (same weights and
    running statistics), since a synchronised BatchNorm in training mode (the paper's test
    mode) would wait for the other processes' statistics forever."""
    module = unwrap(module)
    if not any(isinstance(m, (nn.SyncBatchNorm, CpuSyncBatchNorm)) for m in module.modules()):
        return module
    return _swap_batchnorm(copy.deepcopy(module), nn.modules.batchnorm._BatchNorm, nn.BatchNorm2d)


def _swap_batchnorm(module: nn.Module, old: type[nn.Module], new: type[nn.Module]) -> nn.Module:
    """`module` with every `old` norm layer (in place) replaced by a `new` one holding the same
    parameters and buffers."""
    if isinstance(module, old) and type(module) is not new:
        device = module.running_mean.device if module.running_mean is not None else module.weight.device
        args = (module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        swapped = new(*args, device=device)
        swapped.load_state_dict(module.state_dict())
        return swapped.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, _swap_batchnorm(child, old, new))
    return module


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: each rank's x feeds every rank's sum, so the gradient
    reaching x is the sum of the gradients of all ranks' sums (another all_reduce)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d over the global batch (the images of all processes), for the CPU, where
    torch's SyncBatchNorm does not run. The same math as BatchNorm2d on the concatenated batch:
    the biased variance normalises, the unbiased one goes into the running variance. Its state
    dict is BatchNorm2d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        per_channel = x.numel() // c
        # (C + 1,): per-channel sums and the number of values per channel, over all processes
        totals = _SumOverRanks.apply(torch.cat([x.sum(dim=(0, 2, 3)), x.new_tensor([per_channel])]))
        n = totals[-1].detach()
        if float(n) <= 1:
            raise ValueError(f"batch norm needs more than 1 value per channel over all processes, got {x.shape}")
        mean = totals[:-1] / n  # (C,)
        centred = x - mean.view(1, c, 1, 1)  # (B, C, H, W)
        var = _SumOverRanks.apply(centred.square().sum(dim=(0, 2, 3))) / n  # (C,), biased
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * n / (n - 1), factor)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every process if it is True on any; the flag itself for a single process."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each value summed over the processes (one all_reduce); unchanged for a single process."""
    if not dist.is_initialized() or not values:
        return values
    stacked = torch.stack([v.detach().float() for v in values.values()])  # (K,)
    dist.all_reduce(stacked)
    return dict(zip(values, stacked))


def gather(obj: Any, world: World) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every process (picklable objects, e.g. RNG states)."""
    if world.size == 1:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def rank_seed(seed: int, rank: int, step: int) -> int:
    """The dropout seed of a process that has no saved RNG state: a rank > 0 of a new run, or
    one added when a run is resumed on more processes. SeedSequence hashes (seed, rank, step)
    into unrelated streams, so ranks draw different dropout masks, the same ones every time."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])
