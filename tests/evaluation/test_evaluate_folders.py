"""`pix2pix evaluate --real DIR --fake DIR`: outputs made elsewhere (ONNX, other code) scored like
a model's, matched by relative path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from pix2pix.cli import main
from pix2pix.data.labels import load_palette


def _noise(h: int, w: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def _smooth(h: int, w: int, seed: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    phase = np.random.default_rng(seed).random(3) * 6
    rgb = np.stack([0.5 + 0.5 * np.sin(3 * x + 2 * y + p) for p in phase], -1)
    return Image.fromarray((rgb * 255).astype(np.uint8))


def test_folders_are_scored_like_a_model(tmp_path: Path, capsys) -> None:
    real, fake = tmp_path / "real", tmp_path / "fake"
    (real / "sub").mkdir(parents=True)
    (fake / "sub").mkdir(parents=True)
    for i, name in enumerate(["a", "sub/b", "c"]):
        picture = _smooth(40, 40, i)
        picture.save(real / f"{name}.jpg", quality=95)
        picture.save(fake / f"{name}.png")  # the same picture, as translate writes it
    assert (
        main(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "e"), "--size", "32"]) == 0
    )
    result = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert result["images"] == 3 and result["image"]["psnr"] > 30  # only the JPEG loss between them
    assert (tmp_path / "e" / "index.html").is_file()
    _noise(40, 40, 9).save(fake / "c.png")  # one output replaced by something else: scores drop
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(real),
                "--fake",
                str(fake),
                "--out",
                str(tmp_path / "e"),
                "--size",
                "32",
                "--overwrite",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["image"]["psnr"] < result["image"]["psnr"]
    capsys.readouterr()
    (fake / "c.png").unlink()
    assert main(["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "f")]) == 2
    assert "no image for 1 of the 3 real images, e.g. c" in capsys.readouterr().err


def test_label_maps_scored_as_photo2label(tmp_path: Path) -> None:
    pal = load_palette("cityscapes")
    colours = np.array(pal.colors, dtype=np.uint8)
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        ids = rng.integers(0, len(colours), (32, 32))
        Image.fromarray(colours[ids]).save(real / f"{i}.png")
        Image.fromarray(colours[ids]).save(fake / f"{i}.png")
    out = tmp_path / "e"
    assert (
        main(
            [
                "evaluate",
                "--real",
                str(real),
                "--fake",
                str(fake),
                "--out",
                str(out),
                "--task",
                "photo2label",
                "--size",
                "32",
            ]
        )
        == 0
    )
    result = json.loads((out / "metrics.json").read_text())
    assert result["segmentation"]["pixel_acc"] == 1.0


def test_folders_without_out_print_the_table_or_json_and_write_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for i in range(2):
        _smooth(40, 40, i).save(real / f"{i}.png")
        _smooth(40, 40, i + 5).save(fake / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["evaluate", "--real", str(real), "--fake", str(fake), "--size", "32"]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"2 images of {fake} against {real} at 32 px") and "psnr" in table
    assert "wrote" not in table
    assert main(["evaluate", "--real", str(real), "--fake", str(fake), "--size", "32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2 and f"psnr {result['image']['psnr']:.4f}" in table
    assert sorted(tmp_path.rglob("*")) == before
