"""`pix2pix reproduce colorization`: the photos it prepares, the two runs' configs, the scores
and the report, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix import metrics
from pix2pix.cli import main
from pix2pix.experiments.reproduce_color import COLOR_PROTOCOLS, color_configs, prepare_photos

from ..conftest import shared_dataset


def _pairs(folder: Path, n: int, size: int = 24) -> None:
    """Aligned pairs: a red-ish photo on the left, a blue label map on the right."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(n)
    for i in range(n):
        pair = np.zeros((size, 2 * size, 3), np.uint8)
        pair[:, :size] = (200, 40, 30) + rng.integers(0, 20, (size, size, 3))
        pair[:, size:] = (0, 0, 255)
        Image.fromarray(pair).save(folder / f"{i}.png")


def test_colourfulness_follows_hasler_and_suesstrunk() -> None:
    assert metrics.colourfulness(np.full((4, 4, 3), 0.5)) == 0.0
    red = np.zeros((4, 4, 3))
    red[..., 0] = 1.0
    # constant image: no spread, 0.3 x |(mean rg, mean yb)| = 0.3 x |(255, 127.5)|
    assert metrics.colourfulness(red) == pytest.approx(0.3 * np.hypot(255, 127.5))


def test_photos_are_cut_from_pairs_and_a_single_folder_is_split(tmp_path: Path) -> None:
    _pairs(tmp_path / "data", 20)
    folder = prepare_photos(tmp_path / "data", tmp_path / "out", 32, 0, "left", log=lambda _: None)
    train, val = sorted((folder / "train").glob("*.png")), sorted((folder / "val").glob("*.png"))
    assert (len(train), len(val)) == (18, 2)  # a seeded tenth held out
    photo = np.asarray(Image.open(val[0]))
    assert photo.shape == (32, 32, 3) and photo[..., 0].mean() > 150 and photo[..., 2].mean() < 80  # the left half
    again = prepare_photos(tmp_path / "data", tmp_path / "out", 32, 0, "left", log=lambda _: None)
    assert sorted((again / "val").glob("*.png")) == val  # written once, the same split
    with pytest.raises(ValueError, match="--photo-half"):
        prepare_photos(tmp_path / "data", tmp_path / "out", 32, 0, "top")


def test_corrupt_photos_are_skipped_and_listed_and_val_is_never_trained_on(tmp_path: Path) -> None:
    data = tmp_path / "photos"
    _pairs(data, 6)
    _pairs(data / "val", 2)  # a val/ inside the photo folder
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    folder = prepare_photos(data, tmp_path / "out", 32, 0, "none", log=lambda _: None)
    made = json.loads((folder / "done.json").read_text())
    assert (made["train"], made["val"]) == (6, 2)  # val/'s photos are not in train/
    assert len(made["skipped"]) == 1 and "broken.png" in made["skipped"][0]
    with pytest.raises(ValueError, match="pass another --out"):
        prepare_photos(tmp_path / "elsewhere", tmp_path / "out", 32, 0, "none", log=lambda _: None)


def test_the_enhanced_run_is_snapshotted_after_pretraining_n_and_2n_epochs(tmp_path: Path) -> None:
    _pairs(tmp_path / "data" / "train", 12)
    _pairs(tmp_path / "data" / "val", 3)
    photos = prepare_photos(tmp_path / "data", tmp_path / "out", 128, 10, "left", log=lambda _: None)
    plain, enhanced, per_epoch = color_configs(photos, "reduced", None, "cpu", {"workers": 0})
    assert per_epoch == 10  # 10 photos (the first 10), batch 1
    assert enhanced.run.snapshot_every == per_epoch and enhanced.optim.epochs == 2 * COLOR_PROTOCOLS["reduced"].n_epochs
    assert (enhanced.generator.architecture, enhanced.loss.lambda_l1, enhanced.optim.beta1) == (
        "resnet18-unet",
        200,
        0.9,
    )
    assert enhanced.discriminator.leaky_slope == 0.01 and enhanced.optim.l1_warmup_lr == 1e-4
    assert (plain.generator.architecture, plain.optim.batch_size, plain.data.flip) == ("unet", 4, True)
    assert plain.data.crop_size == enhanced.data.crop_size == 128


def test_the_set_runs_and_reports_on_tiny_models(tmp_path: Path) -> None:
    _pairs(tmp_path / "data" / "train", 6)
    _pairs(tmp_path / "data" / "val", 2)
    args = ["reproduce", "colorization", "--data", str(tmp_path / "data"), "--photo-half", "left"]
    args += ["--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]
    args += ["--set", "workers=0", "--set", "g_channels=4", "--set", "d_channels=4"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "colorization-reduced.json").read_text())
    rows = report["rows"]
    assert len(rows) == 5 and rows[0]["row"].startswith("Control: grey")
    assert rows[0]["colourfulness"] == pytest.approx(0.0, abs=0.5)  # grey, up to 8-bit rounding
    assert [r["steps"] for r in rows[2:]] == [6, 12, 18]  # after pre-training, N and 2N epochs
    assert "encoder from scratch" in report["encoder"] and report["photos"]["half"] == "left"
    assert set(report["distributions"]) == {"real photos", *(r["row"] for r in rows)}
    md = (tmp_path / "out" / "colorization-reduced.md").read_text()
    assert "seed 003's ordering" in md and "Country211" in md
    assert (tmp_path / "out" / "colorization-reduced-distributions.png").stat().st_size > 10_000


@pytest.mark.slow
def test_on_real_cityscapes_photos(tmp_path: Path) -> None:
    data = shared_dataset("cityscapes")
    folder = prepare_photos(data, tmp_path, 64, 20, "left", log=lambda _: None)
    assert len(list((folder / "train").glob("*.png"))) == 20
    assert len(list((folder / "val").glob("*.png"))) == 500
