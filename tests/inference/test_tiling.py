"""Tiled and streamed translation (tiling.py, Pix2Pix.translate_files): sizes, blending, no
visible seams, the pixel limit checked before decoding, and the order of a streamed folder."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pix2pix.cli import main
from pix2pix.data.images import ImageError
from pix2pix.inference import predict, tiling
from pix2pix.inference.generator import run_generator
from pix2pix.inference.predict import Pix2Pix
from pix2pix.inference.tiling import axis_plan, ramp_window, tile_starts, translate_tiled
from pix2pix.models.networks import UNetGenerator

from ..serve.test_demo import png_header_only, save_tiny_model


def _tiled(g: torch.nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
    bands = list(translate_tiled(g, x, lambda t: t, **kwargs))
    tops = [top for top, _ in bands]
    assert tops == sorted(tops) and tops[0] == 0
    return torch.cat([band for _, band in bands], 1)


@pytest.mark.parametrize(
    "length,max_tile,overlap,multiple",
    [(300, 64, 16, 32), (2048, 1024, 64, 256), (8000, 1280, 64, 256), (97, 64, 8, 16)],
)
def test_tiles_cover_every_pixel_with_weights_summing_to_one(length, max_tile, overlap, multiple) -> None:
    tile, starts = axis_plan(length, max_tile, overlap, multiple)
    assert tile % multiple == 0 and tile <= max_tile
    assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlaps of at least `overlap`
    total = torch.zeros(max(length, tile), dtype=torch.float64)
    for j, start in enumerate(starts):
        total[start : start + tile] += ramp_window(starts, j, tile).double()
    assert torch.allclose(total, torch.ones_like(total), atol=1e-6)


def test_axis_plan_covers_with_the_fewest_pixels() -> None:
    # 2048 px in tiles of at most 1024 (multiple 256, overlap 64): 3 x 768 = 2304 px, not 2 x 1280 or 3 x 1024
    assert axis_plan(2048, 1024, 64, 256)[0] == 768
    assert tile_starts(100, 128, 16) == [0]


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, 8, depth=5, dropout=0.0)
    for m in g.modules():  # running statistics that differ from a fresh net's, for eval mode
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return g.eval()


@pytest.mark.parametrize("mode", ["eval", "paper"])
def test_one_tile_is_the_untiled_translation(unet, mode) -> None:
    x = torch.rand(3, 64, 96) * 2 - 1
    # one 64 x 96 tile: paper mode's whole-image statistics are then the batch statistics
    out = _tiled(unet, x, tile=96, overlap=8, mode=mode)
    assert torch.allclose(out, run_generator(unet, x[None], mode)[0], atol=1e-4)


@pytest.mark.parametrize("size", [(20, 30), (200, 300), (33, 250)])
def test_tiled_output_has_the_input_size(unet, size) -> None:
    x = torch.rand(3, *size) * 2 - 1
    assert _tiled(unet, x, tile=64, overlap=16, mode="paper", seed=0).shape == (3, *size)


@pytest.mark.parametrize("mode,passes", [("eval", 1), ("paper", 2)])
def test_progress_counts_tiles_not_images(unet, mode: str, passes: int) -> None:
    calls: list[tuple[int, int]] = []
    _tiled(
        unet,
        torch.rand(3, 100, 150) * 2 - 1,
        tile=64,
        overlap=16,
        mode=mode,
        seed=0,
        on_tiles=lambda *c: calls.append(c),
    )
    tiles = len(axis_plan(100, 64, 16, 32)[1]) * len(axis_plan(150, 64, 16, 32)[1]) * passes  # 32: depth 5
    assert tiles > 4 and calls[-1] == (tiles, tiles)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})  # counted up, tile batch by batch


def _smooth_scene(h: int = 192, w: int = 320) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([2 * xx - 1, torch.sin(4 * xx + 2 * yy) * 0.5 + xx - 0.5, xx**2 * 1.6 - 0.8])


def _seam_score(out: torch.Tensor, starts: list[int], tile: int) -> float:
    """The largest jump of the column profile (mean over rows and channels, smoothed over 4
    columns) at a tile border, over the jumps a few columns either side: about 1 where nothing
    shows, large at a seam."""
    profile = F.avg_pool1d(out.mean((0, 1))[None, None], 4, 1)[0, 0]
    d = (profile[1:] - profile[:-1]).abs()
    ratios = []
    for edge in sorted(set(starts[1:]) | {s + tile for s in starts[:-1]}):
        if 10 < edge < len(d) - 8:
            local = torch.cat([d[edge - 10 : edge - 5], d[edge + 3 : edge + 8]]).mean()
            ratios.append(d[edge - 4 : edge + 1].max() / local)
    return float(torch.stack(ratios).max())


@pytest.mark.parametrize("mode", ["eval", "paper"])
def test_tile_borders_do_not_show(unet, mode) -> None:
    x = _smooth_scene()
    blended = _seam_score(_tiled(unet, x, tile=64, overlap=16, mode=mode, seed=0), tile_starts(320, 64, 16), 64)
    cut = _seam_score(_tiled(unet, x, tile=64, overlap=0, mode=mode, seed=0), tile_starts(320, 64, 0), 64)
    # the untiled translation at the same columns: what the image itself has there
    untiled = run_generator(unet, x[None], mode, 0)[0]
    baseline = max(
        _seam_score(untiled, tile_starts(320, 64, 16), 64), _seam_score(untiled, tile_starts(320, 64, 0), 64)
    )
    assert blended < 1.5 * baseline, (blended, baseline)
    assert cut > 1.5 * baseline, (cut, baseline)  # the measure sees seams where there are some


def test_paper_mode_tiles_share_the_whole_image_statistics(unet, monkeypatch) -> None:
    """Pass 1 gathers every norm layer's input statistics over all tiles; without it each tile is
    normalised by its own, farther from the untiled translation (the image's own statistics)."""
    x = _smooth_scene()
    untiled = run_generator(unet, x[None], "paper")[0]
    shared = (_tiled(unet, x, tile=128, overlap=32, mode="paper") - untiled).abs().mean()
    monkeypatch.setattr(tiling, "_self_normalising", lambda g, mode: [])
    own = (_tiled(unet, x, tile=128, overlap=32, mode="paper") - untiled).abs().mean()
    assert shared < own


# --- translate_files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiling") / "m")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> Pix2Pix:
    return Pix2Pix.load(model_dir)


def test_large_images_are_tiled_automatically_and_said_so(model: Pix2Pix, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (150, 260, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    lines: list[str] = []
    need = tiling.untiled_bytes(model.generator, 150, 260)
    (out,) = model.translate_files(
        [tmp_path / "big.png"], tmp_path / "a", mode="eval", max_memory=need // 2, log=lines.append
    )
    assert Image.open(out).size == (260, 150)
    assert len(lines) == 1 and "big.png: 260x150" in lines[0] and "translating in tiles" in lines[0]
    lines.clear()
    model.translate_files([tmp_path / "big.png"], tmp_path / "b", mode="eval", max_memory=need * 2, log=lines.append)
    assert not lines  # fits: untiled, silently


def test_pixel_limit_is_checked_from_the_header_before_any_decoding(
    model: Pix2Pix, model_dir: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(png_header_only(20_000, 20_000))  # 400 MP claimed, 100 bytes on disk
    decoded = []
    monkeypatch.setattr(predict, "read_image", lambda path: decoded.append(path))
    code = main(["translate", "--model", str(model_dir), str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "b.png: its header claims 20000 x 20000 = 400,000,000 pixels" in err and "--max-pixels" in err
    assert not decoded and not (tmp_path / "o").exists()
    with pytest.raises(ImageError, match="over the --max-pixels limit of 1,000"):
        model.translate_files([tmp_path / "a.png"], tmp_path / "o", max_pixels=1000)


def test_a_folder_streams_in_order_with_a_bounded_read_ahead(model: Pix2Pix, tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    names = [f"{i:02d}.png" for i in range(9)] + ["sub/z.png"]
    rng = np.random.default_rng(1)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (24 + len(name), 32, 3), dtype=np.uint8)).save(src / name)
    events: list[str] = []
    read, write = predict.read_image, predict._write_output
    monkeypatch.setattr(predict, "read_image", lambda path: (events.append("read"), read(path))[1])
    monkeypatch.setattr(predict, "_write_output", lambda *a: (events.append("write"), write(*a))[1])
    written = model.translate_files([src], tmp_path / "out", mode="eval", batch_size=1)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [n for n in names]
    ahead = [events[: i + 1].count("read") - events[: i + 1].count("write") for i in range(len(events))]
    assert max(ahead) <= 4  # the queue (2), one being translated, one being read: never the whole folder
    assert len(names) > 4
    for path, name in zip(written, names):  # the same pixels as translating the file alone
        alone = model.translate(Image.open(src / name).convert("RGB"), mode="eval")
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(alone))


def test_a_bad_file_in_a_stream_is_named(model: Pix2Pix, tmp_path: Path) -> None:
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(ImageError, match="b.png"):
        model.translate_files([tmp_path / "a.png", tmp_path / "b.png"], tmp_path / "o")


def test_tiled_and_batched_images_keep_the_input_order(model: Pix2Pix, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    sizes = {"a.png": (32, 32), "b.png": (150, 260), "c.png": (32, 32), "d.png": (32, 32)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(tmp_path / name)
    need = tiling.untiled_bytes(model.generator, 150, 260)
    files = [tmp_path / name for name in sizes]
    written = model.translate_files(files, tmp_path / "o", mode="eval", batch_size=4, max_memory=need // 2)
    assert [p.name for p in written] == list(sizes)
    assert [Image.open(p).size[::-1] for p in written] == list(sizes.values())


def test_translate_html_index_shows_input_output_and_target(model_dir: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for name in ("p1.png", "p2.png"):
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "o"
    args = ["translate", "--model", str(model_dir), str(tmp_path / "p1.png"), str(tmp_path / "p2.png")]
    assert main([*args, "--out", str(out), "--aligned", "--html"]) == 0
    page = (out / "index.html").read_text()
    assert page.count('alt="output"') == 2 and page.count('alt="target"') == 2 and 'src="p1.png"' in page
    links = re.findall(r'src="([^"]+)"', page)
    assert links and all((out / link).is_file() for link in links)  # every image the page shows is there


def _in_a_terminal(args: list[str]) -> str:
    """Run the command line with a pseudo-terminal as stdout and stderr; what it printed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide
    subprocess.run([sys.executable, "-m", "pix2pix", *args], stdout=slave, stderr=slave, timeout=120, check=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # the terminal's other end is closed and everything was read
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_progress_shows_on_a_terminal_and_not_with_quiet(model_dir: Path, tmp_path: Path) -> None:
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 80, 0, 0)).save(tmp_path / f"{i}.png")
    args = ["translate", "--model", str(model_dir), *(str(tmp_path / f"{i}.png") for i in range(3))]
    shown = _in_a_terminal([*args, "--out", str(tmp_path / "a")])
    assert "translate: 100%" in shown and "3/3" in shown
    quiet = _in_a_terminal([*args, "--out", str(tmp_path / "b"), "--quiet"])
    assert "translate:" not in quiet and "wrote 3 image(s)" in quiet


# --- one step at a time (the demo server's turns) ----------------------------------------------


@pytest.mark.parametrize("mode", ["eval", "paper"])
def test_steps_interleaved_with_other_translations_give_the_same_result(model: Pix2Pix, mode: str) -> None:
    """Between two steps of a tiled translation other seeded translations run on the same
    generator (as the server runs small requests between tiles): the result is the one of the
    steps back to back, which is translate_tiled's with one tile per batch."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8))
    other = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    straight = list(model.translate_steps(image, mode, 5, tile=64, overlap=16))
    assert all(out is None for out in straight[:-1]) and len(straight) > 4  # one generator call per step
    interleaved = []
    for out in model.translate_steps(image, mode, 5, tile=64, overlap=16):
        interleaved.append(out)
        model.translate(other, "paper", seed=len(interleaved))  # dropout draws, batch statistics
    assert np.array_equal(np.asarray(interleaved[-1]), np.asarray(straight[-1]))

    x, scale = model.encode_compact(image)
    bands = translate_tiled(model.generator, x, scale, 64, 16, mode, 5, batch=1)
    expected = np.concatenate([np.asarray(predict.to_array(band)) for _, band in bands])
    assert np.array_equal(np.asarray(straight[-1]), expected)


def test_an_image_within_the_tile_is_one_step_of_the_untiled_translation(model: Pix2Pix) -> None:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (60, 50, 3), dtype=np.uint8))
    steps = list(model.translate_steps(image, "paper", 3, tile=64))
    assert len(steps) == 1 and np.array_equal(np.asarray(steps[0]), np.asarray(model.translate(image, "paper", 3)))
