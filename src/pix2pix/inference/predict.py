"""Translate images of any size with a trained generator; shared by the CLI and the Python API.

The U-Net needs sides divisible by 2**depth (256 at depth 8). Inputs are reflection-padded up to
the next multiple and the output is cropped back, so the output has the input's size and nothing
is resized. The generator is fully convolutional, so a net trained on 256 px crops runs on
larger images (section 4.2, maps at 512 px).

Modes:
- "paper": the paper's inference (section 3.3): dropout on and batch-norm statistics of the
  test batch. Each image is its own batch, as the paper tests with batch 1, so results do not
  depend on which images share a batch. Seeded by `seed` for repeatable samples.
- "eval": deterministic: dropout off, the running statistics learnt in training.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.color import image_to_l_ab, l_ab_to_image
from ..data.images import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    Picture,
    check_pixels,
    compact_tensor,
    convert_channels,
    is_image_file,
    list_images,
    open_image,
    pixel_limit,
    read_image,
    split_pair,
    to_array,
    to_image,
    to_pil8,
    to_tensor,
    write_picture,
)
from ..extras import MissingExtraError
from ..hub.folder import load_model
from ..hub.huggingface import HubError, push, snapshot
from ..hub.model_config import ModelConfig
from ..progress import progress_bar
from .generator import run_generator
from .tiling import DEFAULT_MAX_MEMORY, DEFAULT_OVERLAP, max_tile_for, tiled_steps, translate_tiled, untiled_bytes


class Pix2Pix:
    """A trained generator with what it needs to translate images.

    Example:
        >>> model = Pix2Pix.load("runs/shapes/model")   # doctest: +SKIP
        >>> photo = model.translate(Image.open("labels.png"))   # doctest: +SKIP
    """

    def __init__(
        self, generator: nn.Module, config: ModelConfig | dict[str, Any], device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.config = config if isinstance(config, ModelConfig) else ModelConfig.from_json(config)
        self.in_channels = self.config.in_channels
        self.out_channels = self.config.out_channels
        # colorization: x is the L of Lab, G(x) is ab; the output photo is L + ab in RGB
        self.colorization = self.config.dataset_mode == "colorization"

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Pix2Pix:
        """Load a model folder (config.json + model.safetensors, or an older folder's
        generator.safetensors) or a run directory."""
        generator, config = load_model(Path(path))
        return cls(generator, config, device)

    @classmethod
    def from_pretrained(
        cls,
        id_or_path: str | Path,
        revision: str | None = None,
        device: str | torch.device = "cpu",
        cache_dir: str | Path | None = None,
        token: str | None = None,
    ) -> Pix2Pix:
        """A local model folder (or run directory), else a Hugging Face Hub repository id
        ("user/name") fetched into the Hub cache (needs the `hub` extra; safetensors only, nothing
        is unpickled). Offline (HF_HUB_OFFLINE=1) a repository already in the cache loads."""
        path = Path(id_or_path)
        if path.exists() or str(id_or_path).startswith((".", "/", "~")):
            return cls.load(path, device)
        try:
            folder = snapshot(str(id_or_path), revision, cache_dir, token)
        except (HubError, MissingExtraError) as err:
            raise type(err)(f"{id_or_path}: no model folder by that path here; as a Hub repository: {err}") from None
        return cls.load(folder, device)

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        token: str | None = None,
        metrics: dict[str, Any] | None = None,
        license: str = "other",
    ) -> str:
        """Upload this model (config.json, model.safetensors, a generated README.md card and
        `metrics` from `pix2pix evaluate`, if given) to the Hub; returns the commit URL."""
        return push(self, repo_id, private, token, metrics, license)

    @property
    def input_half(self) -> str:
        """Which half of an aligned pair is this model's input: left for AtoB, right for BtoA."""
        return "right" if self.config.direction == "BtoA" else "left"

    def encode(self, image: Image.Image) -> torch.Tensor:
        """A PIL image (colour or grey) -> the generator's input x, (C_in, H, W) in [-1, 1]:
        the L of Lab for a colorization model, else the image in C_in channels."""
        if self.colorization:
            return image_to_l_ab(image)[0]
        return to_tensor(convert_channels(image, self.in_channels))

    def encode_compact(
        self, image: Image.Image | np.ndarray
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The input as `encode` gives it, but kept in the image's own integer type, with the
        function that scales any crop of it exactly as `encode` would (tiles of a large image
        are scaled one at a time)."""
        if self.colorization:
            return self.encode(image), _unchanged
        return compact_tensor(convert_channels(image, self.in_channels))

    def decode(self, y: torch.Tensor, x: torch.Tensor) -> Image.Image:
        """The generator's output y (C_out, H, W) for input x -> a PIL image: for colorization
        the RGB photo with the L of x and the predicted ab."""
        if self.colorization:
            return l_ab_to_image(x, y)
        return to_image(y)

    def translate(
        self, image: Image.Image | torch.Tensor, mode: str = "paper", seed: int | None = None
    ) -> Image.Image | torch.Tensor:
        """Translate one PIL image (returns a PIL image of the same size) or a tensor in [-1, 1]
        of shape (C, H, W) or (B, C, H, W) (returns the same shape with C_out channels)."""
        if isinstance(image, Image.Image):
            x = self.encode(image)[None]
            return self.decode(run_generator(self.generator, x, mode, seed)[0], x[0])
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"translate takes a PIL image or a tensor, not {type(image).__name__}")
        squeeze = image.ndim == 3
        x = image[None] if squeeze else image
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a tensor (C, H, W) or (B, C, H, W) with C = {self.in_channels}, got {tuple(image.shape)}"
            )
        out = run_generator(self.generator, x.float(), mode, seed)
        return out[0] if squeeze else out

    def translate_steps(
        self,
        image: Image.Image,
        mode: str = "paper",
        seed: int | None = None,
        tile: int = 512,
        overlap: int = DEFAULT_OVERLAP,
    ) -> Iterator[Image.Image | None]:
        """Translate one PIL image a step at a time, for a caller that runs other work between
        steps: yields None after each generator call but the last, then the translated image.

        An image within `tile` px on both sides is one step, `translate(image, mode, seed)`
        itself. A larger one is translated in tiles of at most `tile` px (tiling.tiled_steps,
        one tile per step, the two passes of paper mode included); its result is that of
        `translate_tiled` with one tile per batch, whatever ran on the generator between steps.

        Example:
            >>> steps = model.translate_steps(Image.open("scene.png"), "eval", tile=512)  # doctest: +SKIP
            >>> photo = [out for out in steps if out is not None][0]  # doctest: +SKIP
        """
        if image.width <= tile and image.height <= tile:
            yield self.translate(image, mode, seed)
            return
        x, scale = self.encode_compact(image)
        array = self._output_array(x, 8)
        rows = 0
        for bands in tiled_steps(self.generator, x, scale, tile, overlap, mode, seed, batch=1):
            self._write_bands(array, bands, x, scale)  # rows as they are done: no float copy of the whole
            rows += sum(band.shape[1] for _, band in bands)
            if rows == image.height:  # the last band comes with the last step
                break
            yield None
        yield Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)

    def _output_array(self, x: torch.Tensor, bits: int) -> np.ndarray:
        """The empty output (H, W, C) of input x (C_in, H, W), uint8 or uint16 (`bits`)."""
        channels = 3 if self.colorization else self.out_channels
        return np.zeros((*x.shape[1:], channels), dtype=np.uint8 if bits == 8 else np.uint16)

    def _write_bands(
        self,
        array: np.ndarray,
        bands: Iterable[tuple[int, torch.Tensor]],
        x: torch.Tensor,
        scale: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """Bands (first row, (C_out, rows, W)) of the translation of x into `array` (its dtype
        gives the depth); for colorization the RGB photo, L from x."""
        bits = 8 if array.dtype == np.uint8 else 16
        for top, band in bands:
            rows = slice(top, top + band.shape[1])
            if self.colorization:
                array[rows] = np.asarray(l_ab_to_image(scale(x[:, rows]), band))
            else:
                array[rows] = to_array(band, bits)

    def translate_files(
        self,
        inputs: Sequence[str | Path],
        out_dir: str | Path,
        mode: str = "paper",
        seed: int | None = None,
        batch_size: int = 8,
        half: str = "whole",
        overwrite: bool = False,
        bit_depth: int = 8,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        max_memory: int = DEFAULT_MAX_MEMORY,
        max_pixels: int | None = None,
        log: Callable[[str], None] | None = None,
        progress: bool = False,
    ) -> list[Path]:
        """Translate files and folders of images into `out_dir` as PNG, keeping each input's
        size and, for folders, relative paths. `half`: 'whole' image, or 'left'/'right' half of
        an aligned pair ('input' picks the model's input half). Inputs are read losslessly (16-bit,
        .npy, N-channel TIFF); `bit_depth` 16 writes 16-bit PNG. Returns the written paths.

        Streamed: a loader thread decodes ahead into a bounded queue while the generator runs
        and outputs are written, so memory does not grow with the number of files. Every
        header is checked against `max_pixels` (default 256 megapixels) before anything is decoded. An image whose
        untiled pass would take more than `max_memory` bytes is translated in tiles (tiling.py;
        `tile` 0 never tiles, a number always tiles at that size), said in one line to `log`.
        In paper mode image i of the list gets the noise of seed + i, whatever the batching."""
        if bit_depth not in (8, 16) or (bit_depth == 16 and self.colorization):
            raise ValueError(f"bit_depth must be 8 or 16 (16 not for colorization models), got {bit_depth}")
        jobs = _collect_inputs(inputs, Path(out_dir))
        half = self.input_half if half == "input" else half
        if half not in ("whole", "left", "right"):
            raise ValueError(f"half must be whole, left, right or input, got {half!r}")
        out_root = Path(out_dir).resolve()
        for _, dst in jobs:
            _check_inside(dst, out_root)
        if not overwrite:
            existing = [dst for _, dst in jobs if os.path.lexists(dst)]  # a dangling link too
            if existing:
                raise FileExistsError(
                    f"{existing[0]} exists ({len(existing)} outputs would be overwritten); "
                    "choose another --out or pass --overwrite"
                )
        max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        for src, _ in jobs:
            check_pixels(src, max_pixels)
        plan = _Plan(mode, seed, bit_depth, tile, overlap, max_memory, log or (lambda line: None), progress)
        batch: list[_Item] = []
        written = []
        with _Loader(self, jobs, half, max_pixels) as loader, progress_bar(len(jobs), "translate", progress) as bar:

            def wrote(paths: list[Path]) -> None:
                written.extend(paths)
                bar.update(len(paths))

            for item in loader:
                tiled = plan.tiled(self, item)
                if batch and (tiled or item.x.shape != batch[0].x.shape):  # batches stack one size
                    wrote(self._translate_batch(batch, plan, out_root))
                    batch = []
                if tiled:
                    wrote([self._translate_tiled(item, plan, out_root)])
                    continue
                batch.append(item)
                if mode == "paper" or len(batch) == batch_size:  # paper mode: each image its own batch
                    wrote(self._translate_batch(batch, plan, out_root))
                    batch = []
            if batch:
                wrote(self._translate_batch(batch, plan, out_root))
        return written

    def _translate_batch(self, batch: list[_Item], plan: _Plan, out_root: Path) -> list[Path]:
        """Untiled: eval mode as one batch, paper mode image by image (its own statistics)."""
        x = torch.stack([item.scale(item.x) for item in batch])  # (B, C_in, H, W) in [-1, 1]
        try:
            out = run_generator(self.generator, x, plan.mode, plan.seed_for(batch[0].index))
        except (torch.OutOfMemoryError, RuntimeError) as err:
            if "memory" not in str(err) and not isinstance(err, torch.OutOfMemoryError):
                raise
            h, w = x.shape[-2:]
            raise MemoryError(
                f"{batch[0].src}: out of memory translating {w}x{h} untiled; pass a lower --max-memory "
                "(images whose untiled pass would take more are tiled) or --tile 1024"
            ) from None
        written = []
        for y, item in zip(out, batch):
            if self.colorization or (plan.bit_depth == 8 and y.shape[0] in (1, 3)):
                picture: Picture = self.decode(y, item.scale(item.x))
            else:
                picture = to_array(y, plan.bit_depth)  # 16 bit, or channels beyond gray / RGB
            written.append(_write_output(picture, item.dst, out_root))
        return written

    def _translate_tiled(self, item: _Item, plan: _Plan, out_root: Path) -> Path:
        """One large image through tiling.translate_tiled, its bands written into one array."""
        bits = 8 if self.colorization else plan.bit_depth
        bar = None

        def on_tiles(done: int, total: int) -> None:  # a tiled image's own bar counts its tiles
            nonlocal bar
            if bar is None:
                bar = progress_bar(total, f"tiles of {item.src.name}", plan.progress, unit="tile")
            bar.update(done - bar.n)

        bands = translate_tiled(
            self.generator,
            item.x,
            item.scale,
            plan.tile,
            plan.overlap,
            plan.mode,
            plan.seed_for(item.index),
            plan.max_memory,
            on_tiles=on_tiles,
        )
        array = self._output_array(item.x, bits)
        self._write_bands(array, bands, item.x, item.scale)
        if bar is not None:
            bar.close()
        if array.shape[2] in (1, 3) and bits == 8:
            picture: Picture = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        else:
            picture = array
        return _write_output(picture, item.dst, out_root)


INDEX_THUMB = 512  # px: the longer side of the input and target thumbnails of index.html


def write_index(inputs: Sequence[str | Path], out_dir: str | Path, half: str = "whole") -> Path:
    """OUT/index.html after translate: a row per image, input | output (| target, for aligned
    pairs: `half` 'left' or 'right' is the input half), as the reference's test.py writes.
    Outputs are linked where they are; inputs and targets are JPEG thumbnails in OUT/index_files/."""
    import html

    out_dir = Path(out_dir)
    thumbs = out_dir / "index_files"
    thumbs.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (src, dst) in enumerate(_collect_inputs(inputs, out_dir)):
        picture = to_pil8(read_image(src))
        shown = {"input": picture}
        if half in ("left", "right"):
            left, right = split_pair(picture, src)
            shown = {"input": left, "target": right} if half == "left" else {"input": right, "target": left}
        cells = []
        for kind, image in shown.items():
            image = image.convert("RGB")
            image.thumbnail((INDEX_THUMB, INDEX_THUMB))
            name = f"index_files/{i:05d}_{kind}.jpg"
            image.save(out_dir / name, quality=90)
            cells.append((kind, name))
        cells.insert(1, ("output", dst.relative_to(out_dir).as_posix()))
        figures = "".join(
            f'<figure><img src="{html.escape(link)}" alt="{kind}" loading="lazy">'
            f"<figcaption>{kind}</figcaption></figure>"
            for kind, link in cells
        )
        rows.append(f'<div class="row"><p>{html.escape(str(src))}</p>{figures}</div>')
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pix2pix translate</title><style>'
        "body{font-family:sans-serif;margin:1.5em}.row{display:flex;gap:6px;align-items:flex-start;margin-bottom:8px}"
        ".row p{width:14em;font-size:12px;overflow-wrap:anywhere}figure{margin:0}figcaption{font-size:11px;"
        "text-align:center}img{width:256px}</style></head><body><h1>pix2pix translate</h1>"
        f"<p>{len(rows)} images: input | output{' | target' if half in ('left', 'right') else ''}</p>"
        + "".join(rows)
        + "</body></html>\n"
    )
    (out_dir / "index.html").write_text(page)
    return out_dir / "index.html"


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass
class _Item:
    """One decoded input: its place in the list, paths, and G's input stored compactly."""

    index: int
    src: Path
    dst: Path
    x: torch.Tensor  # (C_in, H, W) as decoded (uint8 / uint16) or float
    scale: Callable[[torch.Tensor], torch.Tensor]  # a crop of x -> G's input in [-1, 1]


@dataclass
class _Plan:
    """How translate_files runs each image: mode, seeds, output depth, and when to tile."""

    mode: str
    seed: int | None
    bit_depth: int
    tile: int | None
    overlap: int
    max_memory: int
    log: Callable[[str], None]
    progress: bool = False  # a tiled image gets its own bar, counting tiles

    def seed_for(self, index: int) -> int | None:
        return None if self.seed is None else self.seed + index

    def tiled(self, model: Pix2Pix, item: _Item) -> bool:
        _, h, w = item.x.shape
        if self.tile is not None:
            return self.tile > 0 and (h > self.tile or w > self.tile)
        need = untiled_bytes(model.generator, h, w)
        if need <= self.max_memory:
            return False
        tile = max_tile_for(model.generator, self.max_memory)
        self.log(
            f"{item.src}: {w}x{h} would take about {need / 2**30:.1f} GiB untiled, over --max-memory "
            f"{self.max_memory / 2**30:.1f} GiB: translating in tiles of at most {tile} px, {self.overlap} px overlap"
        )
        return True


class _Loader:
    """Decodes the inputs in a thread, in order, at most `ahead` of them waiting to be
    translated; an error is raised where the item would have been."""

    def __init__(self, model: Pix2Pix, jobs: list[tuple[Path, Path]], half: str, max_pixels: int, ahead: int = 2):
        self.model, self.jobs, self.half, self.max_pixels = model, jobs, half, max_pixels
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=ahead)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pix2pix-loader", daemon=True)

    def __enter__(self) -> _Loader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        while self.thread.is_alive():  # let a loader blocked on a full queue finish
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.thread.join()

    def __iter__(self) -> Iterator[_Item]:
        while (item := self.queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _put(self, value: Any) -> bool:
        while not self.stopped.is_set():
            with contextlib.suppress(queue.Full):
                self.queue.put(value, timeout=0.05)
                return True
        return False

    def _run(self) -> None:
        try:
            with pixel_limit(self.max_pixels):
                for index, (src, dst) in enumerate(self.jobs):
                    if not self._put(self._load(index, src, dst)):
                        return
        except BaseException as err:  # noqa: BLE001 - handed to the consuming thread, raised there
            self._put(err)
            return
        self._put(None)

    def _load(self, index: int, src: Path, dst: Path) -> _Item:
        img = open_image(src, "RGB") if self.model.colorization else read_image(src)
        if self.half != "whole":
            img = split_pair(img, src)[0 if self.half == "left" else 1]
        try:
            x, scale = self.model.encode_compact(img)
        except ValueError as err:
            raise ImageError(f"{src}: {err}") from None
        return _Item(index, src, dst, x, scale)


def _write_output(picture: Picture, dst: Path, out_root: Path) -> Path:
    """Write beside `dst` and rename over it: a symbolic link at dst is replaced, never written
    through, and an interrupted write leaves no half file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    _check_inside(dst, out_root)  # a folder made just now is real, not a link
    partial = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    try:
        write_picture(picture, partial)
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    return dst


def _check_inside(dst: Path, out_root: Path) -> None:
    """Refuse a destination whose folder leads outside --out (`out_root`, resolved) through a
    symbolic link; folders that do not exist yet will be made inside it."""
    folder = dst.parent
    if folder.exists() and not folder.resolve().is_relative_to(out_root):
        raise ImageError(
            f"{dst}: its folder leads outside {out_root} (a symbolic link to {folder.resolve()}); "
            "outputs are written only inside --out"
        )


def _collect_inputs(inputs: Sequence[str | Path], out_dir: Path) -> list[tuple[Path, Path]]:
    """(source, destination) for every image among files and folders; clear errors otherwise."""
    jobs: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = list_images(item)
            if not files:
                raise ImageError(f"{item}: folder holds no image files")
            jobs += [(f, out_dir / f.relative_to(item).with_suffix(".png")) for f in files]
        elif item.is_file():
            if not is_image_file(item):
                raise ImageError(f"{item}: not an image file (expected .jpg, .png, ...)")
            jobs.append((item, out_dir / (item.stem + ".png")))
        else:
            raise ImageError(f"{item}: no such file or folder")
    seen: dict[Path, Path] = {}
    for src, dst in jobs:
        if dst in seen:
            raise ImageError(f"{src} and {seen[dst]} would both be written to {dst}")
        seen[dst] = src
    return jobs
