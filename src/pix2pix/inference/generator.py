"""Running a generator on a batch of any size: the paper's and the eval inference modes, padding
to the sides the network needs, seeded dropout. Shared by translation (predict.py, tiling.py,
export.py), the samples and validation of training, and the scorer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("paper", "eval")


@contextlib.contextmanager
def generator_mode(generator: nn.Module, mode: str) -> Iterator[nn.Module]:
    """Put G in the paper's inference mode or in eval mode, restoring its state afterwards.

    In paper mode batch norm uses the batch's statistics without touching the running ones.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    was_training = generator.training
    norms = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    try:
        if mode == "paper":
            generator.train()
            for m in norms:
                m.track_running_stats = False  # batch statistics, running ones left as they are
        else:
            generator.eval()
        yield generator
    finally:
        for m, t in zip(norms, tracked):
            m.track_running_stats = t
        generator.train(was_training)


def size_multiple(generator: nn.Module) -> int:
    return int(getattr(generator, "size_multiple", 1))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad (B, C, H, W) on all sides so H and W are multiples; returns the crop box (top, left, H, W).

    Reflection padding (no hard border for the network to see) where the image is large enough,
    replication otherwise.
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    top, left = ph // 2, pw // 2
    pads = (left, pw - left, top, ph - top)
    if ph or pw:
        mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
        x = F.pad(x, pads, mode=mode)
    return x, (top, left, h, w)


def run_generator(generator: nn.Module, x: torch.Tensor, mode: str = "paper", seed: int | None = None) -> torch.Tensor:
    """G(x) for a batch (B, C_in, H, W) of any H, W, in [-1, 1]; returns (B, C_out, H, W)."""
    multiple = size_multiple(generator)
    # a generator without parameters (export.OnnxGenerator, ONNX Runtime) takes CPU tensors
    device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode())
        stack.enter_context(generator_mode(generator, mode))
        if seed is not None:
            devices = [device] if device.type == "cuda" else []
            stack.enter_context(torch.random.fork_rng(devices=devices))
            torch.manual_seed(seed)
        # paper mode: one image per batch, the paper's batch-1 test statistics
        chunks = x.split(1) if mode == "paper" else [x]
        outputs = []
        for chunk in chunks:
            padded, (top, left, h, w) = pad_to_multiple(chunk.to(device), multiple)
            out = generator(padded)
            outputs.append(out[:, :, top : top + h, left : left + w].float().cpu())
    return torch.cat(outputs)
