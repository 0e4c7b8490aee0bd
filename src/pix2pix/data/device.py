"""Training batches cut on the training device from a decoded cache held there (`--cache device`).

On a fast GPU a batch-1 step has a few milliseconds for everything, and loader processes that
decode, crop and copy each pair to the GPU become a bottleneck of their own. The deterministic
part of the data (decode, split, resize to load_size) is done once, up front, by the memory
cache (data/cache.py); here those pairs go to the device as one uint8 tensor per side, and each
step only slices out its crops, mirrors them and scales them to [-1, 1] there, with no process
and no host-to-device copy of pixels.

The crops are exactly the loader's: the offsets and mirrors come from the same per-sample
seeds (EpochSampler) through the same `Augment.draw`, and the scaling is the same arithmetic
as `images.to_tensor`, so a run gives the same batches with either cache (tested).

Memory: the resized pairs, about 0.5 MB per pair at 286 px (uint8, both sides).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

from .aligned import DatasetError, PairedDataset


def _scale(pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) stored pixels -> float in [-1, 1]; the same arithmetic as images.to_tensor."""
    if pixels.dtype == torch.uint8:
        return pixels.float().div_(127.5).sub_(1.0)
    if pixels.dtype == torch.int32:  # uint16 pictures, stored widened (torch has no uint16 ops)
        return pixels.float().div_(32767.5).sub_(1.0)
    return pixels.float().mul(2.0).sub_(1.0)  # bool or floats in [0, 1]


def _stack(arrays: list[np.ndarray], folder: str) -> torch.Tensor:
    """(N, C, H, W) tensor of equal-sized (H, W, C) arrays, in their own dtype."""
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DatasetError(
            f"{folder}: --cache device needs every pair at one size after the resize, found "
            f"{len(shapes)} sizes ({', '.join(str(s[1]) + 'x' + str(s[0]) for s in sorted(shapes)[:3])}...); "
            "use --preprocess resize_and_crop or resize, or --cache memory"
        )
    stacked = np.stack(arrays)
    if stacked.dtype == np.uint16:
        stacked = stacked.astype(np.int32)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2)


class DeviceBatches:
    """The training pairs of `dataset` (built with cache="memory") on `device`, and the
    batches of an epoch cut from them.

    Example:
        >>> pairs = DeviceBatches(dataset, torch.device("cuda"))          # doctest: +SKIP
        >>> for batch in pairs.batches(EpochSampler(len(dataset), 0, 0), 1):  # doctest: +SKIP
        ...     batch["real_a"].shape   # (1, C_in, 256, 256), on the GPU
    """

    def __init__(self, dataset: PairedDataset, device: torch.device) -> None:
        if dataset.cache is None:
            raise ValueError("DeviceBatches needs a dataset built with cache='memory'")
        self.augment = dataset.augment
        self.files = dataset.files
        need = sum(x.nbytes + y.nbytes for x, y in dataset.cache)
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if need > free // 2:  # leave the other half for the networks
                raise DatasetError(
                    f"{dataset.folder}: --cache device needs {need / 2**30:.2f} GiB on {device}, which has "
                    f"{free / 2**30:.2f} GiB free; use --cache memory"
                )
        folder = str(dataset.folder)
        self.x = _stack([x for x, _ in dataset.cache], folder).to(device)  # (N, C_in, H, W)
        self.y = _stack([y for _, y in dataset.cache], folder).to(device)  # (N, C_out, H, W)
        self.nbytes = need

    def __len__(self) -> int:
        return self.x.shape[0]

    def batch(self, items: list[tuple[int, int]]) -> dict[str, torch.Tensor | list[str]]:
        """The batch of the (index, augmentation seed) pairs, as the loader would give it."""
        h, w = self.x.shape[-2:]
        xs, ys = [], []
        for index, seed in items:
            box, flip = self.augment.draw(w, h, torch.Generator().manual_seed(seed))
            x, y = self.x[index], self.y[index]  # (C, H, W) views
            if box is not None:
                left, top, right, bottom = box
                x, y = x[:, top:bottom, left:right], y[:, top:bottom, left:right]
            if flip:
                x, y = x.flip(-1), y.flip(-1)
            xs.append(x)
            ys.append(y)
        return {
            "real_a": _scale(torch.stack(xs)),  # (B, C_in, crop, crop): x
            "real_b": _scale(torch.stack(ys)),  # (B, C_out, crop, crop): y
            "path": [str(self.files[i]) for i, _ in items],
        }

    def batches(self, sampler: Iterable[tuple[int, int]], batch_size: int) -> Iterator[dict]:
        """An epoch's batches in the sampler's order (the last one may be smaller)."""
        items: list[tuple[int, int]] = []
        for item in sampler:
            items.append(item)
            if len(items) == batch_size:
                yield self.batch(items)
                items = []
        if items:
            yield self.batch(items)


def resolve_device(name: str) -> torch.device:
    """A torch device from a flag: auto (cuda if present), cpu, cuda, cuda:N, mps."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device {name!r}: choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device
