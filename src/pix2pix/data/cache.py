"""A decoded-data cache: every pair decoded and resized once, kept in memory.

Loading a 512x256 Cityscapes JPEG for training costs a decode, a split and two bicubic resizes
to 286 px; only the crop offset and the mirror change from epoch to epoch. The cache keeps the
result of the deterministic part (`PairedDataset.prepare`) as arrays, so an epoch only slices
and mirrors them (see benchmarks/RESULTS.md, "Data loading", for what that saves). It is built
up front, with a thread pool, in the training process: loader workers forked afterwards share
its pages instead of each decoding (and holding) their own copy.

Memory: the resized pairs, e.g. 2975 Cityscapes pairs at 286 px are 2 x 286 x 286 x 3 bytes
each, 1.4 GiB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from PIL import Image

from .images import ImageError, Picture

T = TypeVar("T")


def as_array(picture: Picture) -> np.ndarray:
    """(H, W, C) array of a picture, sharing nothing with it."""
    if isinstance(picture, Image.Image):
        array = np.array(picture)
        return array[:, :, None] if array.ndim == 2 else array
    return np.ascontiguousarray(picture)


def build_memory_cache(
    prepare: Callable[[T], tuple[Picture, Picture]], samples: Sequence[T], workers: int = 0
) -> tuple[list[tuple[np.ndarray, np.ndarray] | None], list[tuple[int, ImageError]]]:
    """prepare(sample) for every sample, as arrays; returns the entries (None where it failed)
    and the (index, error) of the failures: this decodes every pixel, so it is also a full check."""
    workers = workers or min(8, os.cpu_count() or 1)

    def one(sample: T) -> tuple[np.ndarray, np.ndarray] | ImageError:
        try:
            x, y = prepare(sample)
        except ImageError as err:
            return err
        return as_array(x), as_array(y)

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, samples))
    else:
        results = [one(s) for s in samples]
    failed = [(i, r) for i, r in enumerate(results) if isinstance(r, ImageError)]
    entries = [None if isinstance(r, ImageError) else r for r in results]
    return entries, failed


def cache_bytes(entries: Sequence[tuple[np.ndarray, np.ndarray] | None]) -> int:
    return sum(x.nbytes + y.nbytes for entry in entries if entry is not None for x, y in [entry])
