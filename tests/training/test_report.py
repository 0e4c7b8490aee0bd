"""`pix2pix report RUN`: one self-contained page of a run, checked as text and in headless Chromium
(it renders, every embedded image loads, nothing is fetched from elsewhere)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from pix2pix.cli import main
from pix2pix.training.report import write_report
from pix2pix.training.train import train

from ..conftest import chromium_driver, tiny_config


@pytest.fixture(scope="module")
def run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    cfg = tiny_config(
        tiny_data, epochs=2, epochs_decay=2, max_steps=20, val_every=5, val_images=2, best_metric="val_psnr",
        sample_every=5, log_every=2, checkpoint_every=10, snapshot_every=10,
    )  # fmt: skip
    train(cfg, folder, progress=False)
    assert main(["report", str(folder)]) == 0
    return folder


def test_the_page_holds_every_curve_the_best_step_and_the_grids(run: Path) -> None:
    page = (run / "report.html").read_text()
    for name in ("g_gan", "g_l1", "d_real", "d_fake", "val_psnr", "val_eval_ssim", "images_per_s", "lr"):
        assert f'aria-label="{name}"' in page, name
    best = json.loads((run / "model-best" / "best.json").read_text())
    assert f"best: {best['value']:.4g} at step {best['step']:,}" in page
    grids = sorted((run / "samples").glob("step_*.png"))
    assert len(grids) == 4 and page.count("data:image/jpeg;base64,") == len(grids)
    assert "epoch 2" in page  # the epoch boundary is marked
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)  # nothing from elsewhere


def test_not_a_run_is_named(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory (no config.json)" in capsys.readouterr().err


def _svg(page: str, label: str) -> str:
    return re.search(rf'<svg[^>]*aria-label="{label}">.*?</svg>', page).group(0)


def test_epoch_labels_do_not_overlap_and_a_flat_lr_axis_hugs_its_value(tmp_path: Path) -> None:
    run = tmp_path / "long"
    run.mkdir()
    (run / "config.json").write_text("{}")
    records = [
        {"step": step, "epoch": step // 10, "g_l1": 1.0 / step, "lr": 0.0002, "images_per_s": 5.0, "time": step / 5}
        for step in range(1, 601)
    ]  # 60 epochs of 10 steps, a constant learning rate
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page = write_report(run).read_text()
    loss = _svg(page, "g_l1")
    assert loss.count("<line") - 2 == 59  # every epoch boundary is drawn...
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)"[^>]*>epoch \d+</text>', loss)]
    assert 2 <= len(xs) <= 10 and min(b - a for a, b in zip(xs, xs[1:])) >= 40  # ...and labelled sparsely
    axis = [float(v) for v in re.findall(r'<text x="44" [^>]*>([-\d.e]+)</text>', _svg(page, "lr"))]  # y axis
    assert axis and 0.00015 < min(axis) < 0.0002 < max(axis) < 0.00025


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    yield from chromium_driver(tmp_path_factory)


def test_the_page_renders_in_chromium_with_its_images(driver, run: Path) -> None:
    driver.get((run / "report.html").as_uri())
    loaded = driver.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert len(loaded) == 4 and all(loaded)
    plots = driver.execute_script("return document.querySelectorAll('svg polyline').length")
    assert plots >= 12
    width = driver.execute_script("return document.querySelector('svg').getBoundingClientRect().width")
    assert width > 100  # the plots have a size: they render
    driver.save_screenshot(str(run / "report.png"))
    assert (run / "report.png").stat().st_size > 10_000
