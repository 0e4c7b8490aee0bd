"""Preparing datasets: paired folders -> aligned pairs (`combine`), one folder -> train/val/test (`split`).

Neither ever overwrites an existing file unless asked: every destination is checked before the
first file is written, so a refused run changes nothing.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .check import SPLITS, Problem, Sample, list_samples, match_pairs
from .images import (
    ImageError,
    Picture,
    convert_channels,
    picture_channels,
    picture_size,
    read_image,
    resize_picture,
    write_picture,
)

RESAMPLE = ("bicubic", "nearest")  # nearest keeps label colours intact


@dataclass
class CombineResult:
    written: list[Path] = field(default_factory=list)
    unmatched: list[Problem] = field(default_factory=list)  # files without a partner (not written)
    failed: list[Problem] = field(default_factory=list)  # pairs that could not be combined


def combine_pair(a: Picture, b: Picture, resize: str | None = None, name: str = "pair") -> Picture:
    """A | B side by side, as one picture both halves fit losslessly: gray + colour gives colour
    (gray repeated), an alpha channel on either side gives both one (opaque where added), 8 + 16
    bit gives 16 bit. B is resized to A's size with `resize` ('bicubic' or 'nearest') or must
    already match it."""
    if picture_size(a) != picture_size(b):
        if resize is None:
            (aw, ah), (bw, bh) = picture_size(a), picture_size(b)
            raise ImageError(f"{name}: A is {aw}x{ah} but B is {bw}x{bh}; pass --resize to resize B to A's size")
        b = _resize(b, picture_size(a), resize)
    ca, cb = picture_channels(a), picture_channels(b)
    if max(ca, cb) > 4:
        if ca != cb:
            raise ImageError(f"{name}: A has {ca} channels and B {cb}; N-channel pairs need equal counts")
    else:
        target = (3 if max(ca, cb) >= 3 else 1) + (1 if {ca, cb} & {2, 4} else 0)
        a, b = _with_channels(a, target, name), _with_channels(b, target, name)
    if isinstance(a, Image.Image) and isinstance(b, Image.Image):
        out = Image.new(a.mode, (a.width * 2, a.height))
        out.paste(a, (0, 0))
        out.paste(b, (a.width, 0))
        return out
    a, b = _as_array(a), _as_array(b)
    dtype = np.result_type(a.dtype, b.dtype)
    return np.concatenate([_scale_to(a, dtype), _scale_to(b, dtype)], axis=1)


def _resize(img: Picture, size: tuple[int, int], resample: str) -> Picture:
    if resample == "bicubic":
        return resize_picture(img, size)
    if isinstance(img, Image.Image):
        return img.resize(size, Image.NEAREST)
    rows = np.arange(size[1]) * img.shape[0] // size[1]
    cols = np.arange(size[0]) * img.shape[1] // size[0]
    return img[rows][:, cols]


def _with_channels(img: Picture, target: int, name: str) -> Picture:
    have = picture_channels(img)
    if target in (2, 4) and have not in (target, target - 1):
        img = convert_channels(img, target - 1, name)
    return convert_channels(img, target, name)


def _as_array(img: Picture) -> np.ndarray:
    array = np.asarray(img)
    return array[:, :, None] if array.ndim == 2 else array


def _scale_to(array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Same values in a wider dtype: uint8 -> uint16 multiplies by 257 (255 -> 65535); integers
    -> float divide by their maximum."""
    if array.dtype == dtype:
        return array
    if np.issubdtype(dtype, np.floating):
        return (array / np.iinfo(array.dtype).max).astype(dtype)
    return array.astype(dtype) * (np.iinfo(dtype).max // np.iinfo(array.dtype).max)


def combine_folders(
    a_dir: Path | str,
    b_dir: Path | str,
    out_dir: Path | str,
    resize: str | None = None,
    ext: str = ".png",
    overwrite: bool = False,
    workers: int = 0,
) -> CombineResult:
    """Write A | B pairs for every name found in both folders (subfolders such as train/ and val/
    are kept: A/train/x.png + B/train/x.jpg -> OUT/train/x.png). Files without a partner are
    reported and skipped; so are pairs that cannot be combined (sizes differ without `resize`).

    Example:
        >>> result = combine_folders("photos", "labels", "datasets/facades_like")  # doctest: +SKIP
        >>> len(result.written), [str(p) for p in result.unmatched]  # doctest: +SKIP
    """
    a_dir, b_dir, out_dir = Path(a_dir), Path(b_dir), Path(out_dir)
    for folder in (a_dir, b_dir):
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a folder")
    if resize is not None and resize not in RESAMPLE:
        raise ValueError(f"resize must be one of {RESAMPLE}, got {resize!r}")
    ext = ext if ext.startswith(".") else "." + ext
    samples, problems = match_pairs(a_dir, b_dir)
    result = CombineResult(unmatched=problems)
    jobs = [(s, out_dir / (s.name + ext)) for s in samples]
    if not overwrite:
        existing = [dst for _, dst in jobs if dst.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} exists ({len(existing)} of {len(jobs)} outputs would be overwritten); "
                "pass --overwrite or choose another output folder"
            )

    def one(job: tuple[Sample, Path]) -> Path | Problem:
        sample, dst = job
        try:
            pair = combine_pair(read_image(sample.files[0]), read_image(sample.files[1]), resize, str(sample.files[0]))
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_picture(pair, dst)
        except ImageError as err:
            return Problem(sample.files[0], str(err).split(": ", 1)[-1])
        return dst

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for outcome in pool.map(one, jobs):
            (result.failed if isinstance(outcome, Problem) else result.written).append(outcome)
    return result


@dataclass
class SplitResult:
    assigned: dict[str, list[Sample]]  # split -> samples, in name order
    unmatched: list[Problem] = field(default_factory=list)
    moved: bool = False


def split_dataset(
    folder: Path | str,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    move: bool = False,
    overwrite: bool = False,
    out: Path | str | None = None,
    dry_run: bool = False,
) -> SplitResult:
    """Split the pairs of `folder` into train/, val/ and test/ (under `out`, default `folder`).

    The assignment is a seeded permutation of the names in sorted order: the same files, fractions
    and seed give the same split on any machine. round(val * n) pairs go to val/, round(test * n)
    to test/, the rest to train/ (empty splits are not created). Aligned pairs keep their relative
    paths; paired folders (A/ and B/) move as pairs: A/x.png -> train/A/x.png, B/x.jpg ->
    train/B/x.jpg. Copies unless `move`; never overwrites unless `overwrite`.
    """
    folder = Path(folder)
    out = Path(out) if out is not None else folder
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"--val {val} and --test {test} must be fractions in [0, 1) that sum to less than 1")
    paired = (folder / "A").is_dir() and (folder / "B").is_dir()
    if paired:
        samples, unmatched = match_pairs(folder / "A", folder / "B")
    else:
        samples, unmatched = list_samples(folder, "aligned")
        samples = [s for s in samples if s.files[0].relative_to(folder).parts[0] not in SPLITS]
    if not samples:
        raise ValueError(f"{folder}: no image pairs to split (files already in train/, val/, test/ are left alone)")
    order = np.random.default_rng(seed).permutation(len(samples))
    n_test, n_val = round(test * len(samples)), round(val * len(samples))
    which = {int(i): "test" for i in order[:n_test]}
    which |= {int(i): "val" for i in order[n_test : n_test + n_val]}
    assigned: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for i, sample in enumerate(samples):
        assigned[which.get(i, "train")].append(sample)
    jobs = []
    for split, members in assigned.items():
        for sample in members:
            for src in sample.files:
                rel = src.relative_to(folder)  # A/x.png for paired folders
                jobs.append((src, out / split / rel))
    if not overwrite:
        existing = [dst for _, dst in jobs if dst.exists()]
        if existing:
            raise FileExistsError(
                f"{existing[0]} exists ({len(existing)} destinations taken); pass --overwrite to replace them"
            )
    if not dry_run:
        for src, dst in jobs:
            dst.parent.mkdir(parents=True, exist_ok=True)
            if move:
                shutil.move(src, dst)
            else:
                shutil.copy2(src, dst)
    return SplitResult({k: v for k, v in assigned.items() if v}, unmatched, move)
