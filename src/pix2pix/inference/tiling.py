"""Translate images of any size in bounded memory: overlapping tiles blended with a cosine window.

An untiled pass keeps every activation of the whole image (the 256 px U-Net holds several
kilobytes per pixel), so a scene of 100 megapixels needs hundreds of gigabytes. Tiled, the image
is cut into tiles of `tile` px (a multiple of the generator's size multiple), spread evenly so
that neighbours overlap by at least `overlap` px; each tile's output is weighted by a window that
ramps over its overlaps (raised cosine, the two ramps of an overlap sum to 1) and the weighted
sum is divided by the summed weights. Output rows are handed back in bands as soon as no later
tile touches them, so the caller can write them out: memory is the input, one band of output
and one batch of tiles.

Normalisation across tiles. A norm layer that normalises with the statistics of its own input
(batch norm in the paper's inference mode, whose statistics are those of the test image;
instance norm always) would see each tile's statistics, which differ from tile to tile and
show as seams. Then translation takes two passes: the first runs every tile and gathers, per
layer and channel, the mean and variance of the layer's input over all tiles (the whole image's
statistics, up to overlaps counted twice and to the tiles' own normalisation upstream); the
second translates with every such layer normalising by those statistics, dropout still on in
paper mode. Eval-mode batch norm uses the running statistics learnt in training: one pass.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .generator import generator_mode, size_multiple

DEFAULT_OVERLAP = 64  # px shared by neighbouring tiles
DEFAULT_MAX_MEMORY = 3 * 2**30  # bytes an untiled pass may take before tiling is chosen


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of `tile` px covering [0, length), evenly spread, neighbours
    overlapping by at least `overlap` px. Needs length >= tile."""
    if length <= tile:
        return [0]
    count = max(math.ceil((length - overlap) / (tile - overlap)), 2)
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def axis_plan(length: int, max_tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """(tile size, starts) along one side: the tile size (a multiple of `multiple`, at most
    `max_tile`) and count that cover `length` with the fewest pixels through the network. A side
    shorter than its one tile is padded to it by the caller."""
    best: tuple[int, int] | None = None  # (pixels covered, tile)
    fewest = max(1, math.ceil((length - overlap) / (max_tile - overlap)))
    for count in range(fewest, fewest + 4):
        tile = math.ceil((length + (count - 1) * overlap) / count / multiple) * multiple
        if tile <= max_tile and (best is None or count * tile < best[0]):
            best = (count * tile, tile)
    tile = best[1] if best else max_tile
    return tile, tile_starts(max(length, tile), tile, overlap)


def ramp_window(starts: list[int], index: int, tile: int) -> torch.Tensor:
    """1-D weights (tile,) of tile `index`: 1, with raised-cosine ramps over its overlaps with the
    tiles before and after; at a shared pixel the two neighbours' weights sum to 1."""
    w = torch.ones(tile, dtype=torch.float64)
    if index > 0:
        n = starts[index - 1] + tile - starts[index]  # overlap with the tile before
        k = torch.arange(n, dtype=torch.float64)
        w[:n] = (1 - torch.cos(math.pi * (k + 0.5) / n)) / 2
    if index < len(starts) - 1:
        n = starts[index] + tile - starts[index + 1]
        k = torch.arange(n, dtype=torch.float64)
        w[tile - n :] = w[tile - n :] * (1 + torch.cos(math.pi * (k + 0.5) / n)) / 2
    return w.float()


def activation_bytes_per_pixel(generator: nn.Module) -> float:
    """Bytes of activations an untiled pass keeps per input pixel (all module outputs of one
    pass at the size multiple, over its pixels; a bound, since inference frees some early)."""
    cached = getattr(generator, "_pix2pix_bytes_per_pixel", None)
    if cached is not None:
        return cached
    side = max(int(getattr(generator, "size_multiple", 1)), 64)
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in generator.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    in_channels = next((m.in_channels for m in generator.modules() if isinstance(m, nn.Conv2d)), 3)
    try:
        with torch.inference_mode():
            was = generator.training
            generator.eval()
            generator(torch.zeros(1, in_channels, side, side, device=device))
            generator.train(was)
    finally:
        for h in hooks:
            h.remove()
    value = total / side**2
    generator._pix2pix_bytes_per_pixel = value  # type: ignore[attr-defined]
    return value


def untiled_bytes(generator: nn.Module, height: int, width: int) -> int:
    """Estimated peak bytes of translating one height x width image untiled."""
    m = max(int(getattr(generator, "size_multiple", 1)), 1)
    padded = math.ceil(height / m) * m * math.ceil(width / m) * m
    return int(activation_bytes_per_pixel(generator) * padded)


def _self_normalising(generator: nn.Module, mode: str) -> list[nn.Module]:
    """Norm layers that would normalise each tile by its own statistics in `mode`."""
    own = (nn.modules.instancenorm._InstanceNorm,) + ((nn.modules.batchnorm._BatchNorm,) if mode == "paper" else ())
    return [m for m in generator.modules() if isinstance(m, own)]


class _WholeImageStatistics:
    """Per-channel sums of each norm layer's input over every tile (pass 1), then those layers
    normalising by the totals (pass 2), by forward hooks that replace the layers' outputs."""

    def __init__(self, layers: list[nn.Module]) -> None:
        self.layers = layers
        self.sums: dict[nn.Module, list[torch.Tensor | int]] = {}

    @contextlib.contextmanager
    def gathering(self) -> Iterator[None]:
        def add(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].double()  # (B, C, H, W)
            s = self.sums.setdefault(module, [0, 0, 0])
            s[0] = s[0] + x.sum((0, 2, 3))
            s[1] = s[1] + x.square().sum((0, 2, 3))
            s[2] += x.numel() // x.shape[1]

        hooks = [m.register_forward_pre_hook(add) for m in self.layers]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        def normalise(module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> torch.Tensor:
            total, squares, n = self.sums[module]
            mean = total / n
            var = (squares / n - mean.square()).clamp_min(0)  # biased, as a norm layer's batch statistics
            x = inputs[0]
            weight = module.weight if getattr(module, "affine", False) else None
            bias = module.bias if getattr(module, "affine", False) else None
            return F.batch_norm(x, mean.to(x.dtype), var.to(x.dtype), weight, bias, False, 0.0, module.eps)

        hooks = [m.register_forward_hook(normalise) for m in self.layers if m in self.sums]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()


def max_tile_for(generator: nn.Module, max_memory: int) -> int:
    """The largest square tile (a multiple of the generator's size multiple) whose activations
    fit in a third of `max_memory`; the rest holds the weights, the image, its output and the
    bands of rows being blended."""
    multiple = max(int(getattr(generator, "size_multiple", 1)), 1)
    side = math.sqrt(max_memory / 3 / activation_bytes_per_pixel(generator))
    return max(multiple, int(side // multiple) * multiple)


def translate_tiled(
    generator: nn.Module,
    x: torch.Tensor,
    scale: Callable[[torch.Tensor], torch.Tensor],
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    mode: str = "eval",
    seed: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    batch: int | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Translate image `x` (C_in, H, W) tile by tile; yields (first row, band (C_out, rows, W)
    float32 in [-1, 1]) from the top down, bands covering every row once.

    `tile`: the largest tile side in px (default: what a third of `max_memory` holds); each side
    gets the tile size and count that cover it with the fewest pixels. `batch`: tiles of a row
    run as one batch (default: as many as a third of `max_memory` holds). `x` may be stored
    compactly (uint8 or uint16 as decoded): `scale` maps a crop of it to the generator's float
    input in [-1, 1]. `on_tiles(done, total)`: called after each batch of tiles (a progress bar
    counts tiles, not images; a paper-mode image with batch statistics runs every tile twice,
    both counted)."""
    for bands in tiled_steps(generator, x, scale, tile, overlap, mode, seed, max_memory, batch, on_tiles):
        yield from bands


def tiled_steps(
    generator: nn.Module,
    x: torch.Tensor,
    scale: Callable[[torch.Tensor], torch.Tensor],
    tile: int | None = None,
    overlap: int = DEFAULT_OVERLAP,
    mode: str = "eval",
    seed: int | None = None,
    max_memory: int = DEFAULT_MAX_MEMORY,
    batch: int | None = None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """`translate_tiled`, one generator call at a time: after each call (one batch of tiles, of
    pass 1 or 2) yields the bands that call completed, often none.

    Between two steps nothing of this translation is left on the generator or in the process:
    each step puts G in `mode`, restores this translation's own RNG state (seeded once by `seed`)
    and its statistics hooks, and takes them off again. So other translations may run on the same
    generator between steps (the demo server's requests between the tiles of a large upload)
    without changing this one's result: it is that of running the steps back to back."""
    multiple = max(size_multiple(generator), 1)
    max_tile = (
        max_tile_for(generator, max_memory) if tile is None else max(multiple, math.ceil(tile / multiple) * multiple)
    )
    _, height, width = x.shape
    if max(height, width) <= max_tile:
        overlap = 0  # one tile: nothing to share
    elif tile is None:
        overlap = min(overlap, max_tile // 4)  # tiles sized from the memory budget: overlap follows
    elif not 0 <= overlap < max_tile // 2:
        raise ValueError(f"overlap must be in [0, {max_tile // 2}) for {max_tile} px tiles, got {overlap}")
    (tile_h, ys), (tile_w, xs) = (
        axis_plan(height, max_tile, overlap, multiple),
        axis_plan(width, max_tile, overlap, multiple),
    )
    if height < tile_h or width < tile_w:
        yield from _padded(generator, x, scale, (tile_h, tile_w), overlap, mode, seed, max_memory, batch, on_tiles)
        return
    if batch is None:
        batch = int(max_memory / 3 // (activation_bytes_per_pixel(generator) * tile_h * tile_w))
    batch = max(1, batch)
    wx = [ramp_window(xs, j, tile_w) for j in range(len(xs))]
    device = next((p.device for p in generator.parameters()), torch.device("cpu"))
    layers = _self_normalising(generator, mode)
    stats = _WholeImageStatistics(layers)
    rng = _RngState(device, seed)
    tiles, tiles_done = len(ys) * len(xs) * (2 if layers else 1), 0

    def run(y0: int, js: range) -> torch.Tensor:
        """The tiles js of the row at y0 through G: (len(js), C_out, tile_h, tile_w)."""
        nonlocal tiles_done
        crops = torch.stack([scale(x[:, y0 : y0 + tile_h, xs[j] : xs[j] + tile_w]) for j in js])
        out = generator(crops.to(device)).float().cpu()
        tiles_done += len(js)
        if on_tiles is not None:
            on_tiles(tiles_done, tiles)
        return out

    @contextlib.contextmanager
    def step(hooks: Callable[[], contextlib.AbstractContextManager[None]]) -> Iterator[None]:
        with torch.inference_mode(), generator_mode(generator, mode), rng.restored(), hooks():
            yield

    chunks = [range(j0, min(j0 + batch, len(xs))) for j0 in range(0, len(xs), batch)]
    if layers:  # pass 1: the whole image's statistics (module docstring)
        for y0 in ys:
            for js in chunks:
                with step(stats.gathering):
                    run(y0, js)
                yield []
    # the band of rows being blended: tile_h rows from `top`, allocated on the first output
    acc, weights, top = None, torch.zeros(tile_h, width), 0
    for i, y0 in enumerate(ys):
        wy = ramp_window(ys, i, tile_h)
        for c, js in enumerate(chunks):
            bands = []
            with step(stats.applied if layers else contextlib.nullcontext):
                for j, out in zip(js, run(y0, js)):
                    acc = torch.zeros(out.shape[0], tile_h, width) if acc is None else acc
                    w = wy[:, None] * wx[j][None, :]  # (tile_h, tile_w)
                    acc[:, :, xs[j] : xs[j] + tile_w] += out * w
                    weights[:, xs[j] : xs[j] + tile_w] += w
                if c == len(chunks) - 1:  # the row is done
                    done = (ys[i + 1] if i + 1 < len(ys) else height) - top  # rows no later tile touches
                    bands.append((top, acc[:, :done] / weights[None, :done]))
                    # the rows still open move up to the band's start; the freed rows below are cleared
                    acc[:, : tile_h - done], weights[: tile_h - done] = acc[:, done:].clone(), weights[done:].clone()
                    acc[:, tile_h - done :], weights[tile_h - done :] = 0, 0
                    top += done
            yield bands


class _RngState:
    """The random state of one seeded translation, kept apart from the process's: `restored()`
    puts it in place for one step and keeps what the step drew (dropout) for the next. Unseeded,
    the process's own state is used as it is."""

    def __init__(self, device: torch.device, seed: int | None) -> None:
        self.devices = [device] if device.type == "cuda" else []
        self.state: tuple[torch.Tensor, list[torch.Tensor]] | None = None
        if seed is not None:
            with torch.random.fork_rng(devices=self.devices):
                torch.manual_seed(seed)
                self.state = self._get()

    def _get(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in self.devices]

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        if self.state is None:
            yield
            return
        with torch.random.fork_rng(devices=self.devices):
            torch.set_rng_state(self.state[0])
            for d, s in zip(self.devices, self.state[1]):
                torch.cuda.set_rng_state(s, d)
            yield
            self.state = self._get()


def _padded(
    generator: nn.Module,
    x: torch.Tensor,
    scale: Callable[[torch.Tensor], torch.Tensor],
    tile: tuple[int, int],
    overlap: int,
    mode: str,
    seed: int | None,
    max_memory: int,
    batch: int | None,
    on_tiles: Callable[[int, int], None] | None = None,
) -> Iterator[list[tuple[int, torch.Tensor]]]:
    """A side shorter than its one tile: padded to it on both sides (reflection where the image
    is large enough, as untiled translation pads), translated, and cropped back."""
    _, height, width = x.shape
    ph, pw = max(tile[0] - height, 0), max(tile[1] - width, 0)
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    how = "reflect" if max(pads[:2]) < width and max(pads[2:]) < height else "replicate"
    padded = F.pad(x[None].float(), pads, mode=how)[0].to(x.dtype)  # integer images pad as float and back
    tiled = tiled_steps(generator, padded, scale, max(tile), overlap, mode, seed, max_memory, batch, on_tiles)
    for bands in tiled:
        cropped = []
        for first, band in bands:
            rows = band[:, :, pads[0] : pads[0] + width]
            top, bottom = max(first, pads[2]), min(first + rows.shape[1], pads[2] + height)
            if bottom > top:
                cropped.append((top - pads[2], rows[:, top - first : bottom - first]))
        yield cropped
