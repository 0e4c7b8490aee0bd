"""Audit fixes against the paper and the reference code (issue 14, part 1): dropout placement,
the first-published bottleneck norm at batch 1, reference `none` models, the figure-7 set on its
own, and what the reduced protocol and the FCN-score reports say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pix2pix.experiments.reproduce import FCN_PROTOCOL, format_report, reproduce
from pix2pix.hub.folder import load_model
from pix2pix.models.networks import UNetGenerator, dropout_levels
from pix2pix.models.norms import OneValueBatchNorm
from pix2pix.paper import SETS
from pix2pix.training.train import train

from ..conftest import tiny_config
from ..evaluation.test_evaluate import city, segmenter  # noqa: F401 - the tiny Cityscapes-like data and its segmenter


def _dropout_levels(g: UNetGenerator) -> list[int]:
    return [j for j, level in enumerate(g.decoder) if any(isinstance(m, nn.Dropout) for m in level)]


@pytest.mark.parametrize(
    ("depth", "paper", "reference"),
    [(8, [0, 1, 2], [1, 2, 3]), (7, [0, 1, 2], [1, 2])],  # unet_256 and unet_128 of the reference
)
def test_dropout_placement(depth: int, paper: list[int], reference: list[int]) -> None:
    assert _dropout_levels(UNetGenerator(3, 3, 4, depth, **dropout_levels(depth, "paper"))) == paper
    assert _dropout_levels(UNetGenerator(3, 3, 4, depth, **dropout_levels(depth, "reference"))) == reference


def test_a_run_with_the_reference_dropout_placement_records_it(tiny_data: Path, tmp_path: Path) -> None:
    train(tiny_config(tiny_data, max_steps=1, dropout_placement="reference", unet_depth=5), tmp_path, progress=False)
    generator, card = load_model(tmp_path / "model")
    assert card.generator["dropout_first_level"] == 1 and card.generator["dropout_levels"] == 0  # depth 5: none
    assert _dropout_levels(generator) == []


def test_the_published_bottleneck_norm_zeroes_it_at_batch_1_instead_of_failing(tiny_data: Path, tmp_path) -> None:
    norm = OneValueBatchNorm(6).train()
    with torch.no_grad():
        norm.bias.copy_(torch.arange(6.0))
    x = torch.randn(1, 6, 1, 1, requires_grad=True)
    y = norm(x)
    assert torch.equal(y, torch.arange(6.0).view(1, 6, 1, 1))  # (x - mean) / std of one value is 0
    y.sum().backward()
    assert x.grad is None or not x.grad.any()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(6).train()(torch.randn(1, 6, 1, 1))  # what PyTorch's own layer does
    summary = train(tiny_config(tiny_data, max_steps=2, batch_size=1, innermost_norm=True), tmp_path, progress=False)
    assert summary["step"] == 2
    generator, _ = load_model(tmp_path / "model")
    assert isinstance(generator.encoder[-1][-1], nn.BatchNorm2d)  # the same state-dict layout


def test_figure7_runs_on_its_own_and_the_reduced_schedule_is_as_described(city: Path, tmp_path: Path) -> None:  # noqa: F811
    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    path = reproduce("figure7", city, tmp_path, protocol="reduced", device="cpu", extra=tiny, progress=False)
    report = json.loads(path.with_suffix(".json").read_text())
    assert len(report["rows"]) == 4 and not (tmp_path / "segmenter-32px").exists()  # no segmenter needed
    assert all(0 <= r["scores"]["color"]["hist_L"] <= 1 for r in report["rows"])
    text = path.read_text()
    assert "the first at lr 2e-4, the second at 1e-4" in text and FCN_PROTOCOL not in text
    log = [json.loads(line) for line in ((tmp_path / report["rows"][0]["run"]) / "log.jsonl").read_text().splitlines()]
    assert {r["lr"] for r in log if r["epoch"] == 0} == {2e-4} and {r["lr"] for r in log if r["epoch"] == 1} == {1e-4}


def test_fcn_score_reports_say_how_the_protocol_differs() -> None:
    exp = SETS["table1"]
    report = {
        "title": exp.title, "protocol": "reduced", "machine": "m", "date": "d", "version": "v", "command": "c",
        "reduced": {}, "extra": {}, "metric_names": list(exp.metric_names), "ground_truth_paper": None,
        "rows": [{"row": "L1", "run": "r", "paper": None, "training": {}, "scores": {"fcn": {}}}],
    }  # fmt: skip
    report["rows"][0]["scores"]["fcn"] = {"pixel_acc": 0.5, "class_acc": 0.2, "class_iou": 0.1}
    assert FCN_PROTOCOL in format_report(report, exp)
    assert "FCN-8s" in FCN_PROTOCOL and "1024 x 2048" in FCN_PROTOCOL


def test_table1_reports_put_seed_000s_reproduction_beside_the_paper() -> None:
    exp = SETS["table1"]
    fcn = {"pixel_acc": 0.5, "class_acc": 0.2, "class_iou": 0.1}
    rows = [
        {"row": r.name, "run": "r", "paper": r.paper, "seed000": r.seed000, "training": {"step": 5950, "seconds": 12.5},
         "scores": {"fcn": fcn, "fcn_ground_truth": fcn}}
        for r in exp.rows
    ]  # fmt: skip
    report = {
        "title": exp.title, "protocol": "reduced", "machine": "m", "date": "d", "version": "v", "command": "c",
        "reduced": {}, "extra": {}, "metric_names": list(exp.metric_names), "rows": rows,
        "ground_truth_paper": exp.ground_truth_paper, "ground_truth_seed000": exp.ground_truth_seed000,
    }  # fmt: skip
    lines = format_report(report, exp).splitlines()
    assert "seed 000 (pixel_acc / class_acc / class_iou)" in next(line for line in lines if line.startswith("| Row"))
    row = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert "| 0.60 / 0.20 / 0.15 | 5950 | 12.5 |" in row["L1"]  # seed 000's L1, then steps and training seconds
    assert "0.55 / 0.20 / 0.14" in row["L1+cGAN"] and "0.66 / 0.23 / 0.18" in row["cGAN"]
    assert "| 0.80 / 0.26 / 0.21 | 0.76 / 0.25 / 0.20 |" in row["Ground truth (segmenter on real photos)"]


def test_reproduce_can_train_without_scoring(city: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    from pix2pix.cli import main

    args = ["reproduce", "table6", "--data", str(city), "--out", str(tmp_path), "--device", "cpu", "--no-progress"]
    tiny = ["--set", "crop_size=32", "--set", "load_size=36", "--set", "g_channels=4", "--set", "d_channels=4"]
    tiny += ["--set", "workers=0", "--set", "num_samples=0"]
    assert main([*args, *tiny, "--train-only"]) == 0
    assert len(list(tmp_path.glob("runs/*/done.json"))) == 3
    assert not list(tmp_path.glob("runs/*/eval-*.json")) and not list(tmp_path.glob("*.md"))
    assert main([*args, *tiny]) == 0 and (tmp_path / "table6-reduced.md").is_file()


def test_every_fcn_set_shares_one_barely_trained_control(tmp_path: Path) -> None:
    """Table 2 trains at batch 10, but its control is the same batch-1 run as Table 1's: the set's
    own overrides would make "L1 after 300 steps" a half-trained model there (300 x 10 images)."""
    from pix2pix.experiments.reproduce import control_configs, row_config, run_name

    def control(name: str):
        [(row, cfg)] = control_configs(SETS[name], tmp_path, "reduced")
        return cfg

    table2 = row_config(SETS["table2"], SETS["table2"].rows[0], tmp_path, "reduced")
    assert table2.optim.batch_size == 10 and control("table2").optim.batch_size == 1
    assert control("table2").run.max_steps == 300
    assert run_name(control("table2")) == run_name(control("table1")) == run_name(control("table3"))


def test_two_processes_share_a_sets_rows(city: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    """A row another process is training is passed over (the next row is trained meanwhile), and
    the set is not called trained until it is done: `reproduce SET --train-only` run twice on
    two cores splits the rows between the two."""
    from pix2pix.experiments.reproduce import row_config, run_name, status
    from pix2pix.training.run import RunBusyError

    from ..training.test_reliability import held_by_another_process

    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    exp = SETS["table6"]
    busy = tmp_path / "runs" / run_name(row_config(exp, exp.rows[1], city, "reduced", "cpu", tiny))
    with held_by_another_process(busy) as holder:
        with pytest.raises(RunBusyError, match=r"1 row\(s\) still being trained by other processes \(cGAN\)"):
            reproduce("table6", city, tmp_path, device="cpu", extra=tiny, progress=False, train_only=True)
        assert len(list(tmp_path.glob("runs/*/done.json"))) == 2 and not (busy / "done.json").exists()
        # `reproduce --status` tells the three apart, naming the process that holds the busy row
        lines = status(tmp_path, "reduced", ["table6"], tiny)
        assert lines[0] == "table6: no report yet"
        assert lines[1].startswith("  L1: trained, not scored yet") and lines[3].startswith("  L1+cGAN: trained")
        assert lines[2] == f"  cGAN: training now, by another process (pid {holder.pid}) ({busy.name})"
    assert status(tmp_path, "reduced", ["table6"], tiny)[2] == "  cGAN: not started"  # the lock died, no step logged
    assert reproduce("table6", city, tmp_path, device="cpu", extra=tiny, progress=False, train_only=True) is None
    assert (busy / "done.json").is_file()
    from pix2pix.cli import main

    settings = [item for k, v in tiny.items() for item in ("--set", f"{k}={v}")]
    assert main(["reproduce", "table6", "--status", "--out", str(tmp_path), *settings]) == 0
    assert capsys.readouterr().out.count("trained, not scored yet") == 3


def test_fcn_reports_carry_the_control_rows(city: Path, segmenter: Path, tmp_path: Path) -> None:  # noqa: F811
    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    path = reproduce(
        "table1", city, tmp_path, protocol="reduced", segmenter=segmenter, device="cpu", extra=tiny, progress=False
    )
    report = json.loads(path.with_suffix(".json").read_text())
    names = [c["row"] for c in report["controls"]]
    assert names[0].startswith("Control: one blank image") and names[1] == "Control: L1 after 300 steps"
    blank, barely = report["controls"]
    gt = report["rows"][0]["scores"]["fcn_ground_truth"]
    # on the four-class toy scenes the real photos segment almost perfectly; a grey image does not.
    # (class IoU averages 19 classes, 15 of them absent here and counted 0, so its gaps are 4/19
    # of the per-class ones: the margin is asked of per-pixel accuracy)
    assert gt["pixel_acc"] > blank["scores"]["fcn"]["pixel_acc"] + 0.10
    assert gt["class_iou"] > blank["scores"]["fcn"]["class_iou"]
    # the blank is scored as the set's direction (labels -> photo): it reads the same real photos
    # as every row, so its own ground-truth row is theirs (AtoB would segment the label half)
    assert json.loads((tmp_path / blank["run"] / "model" / "config.json").read_text())["direction"] == "BtoA"
    assert blank["scores"]["fcn_ground_truth"] == gt
    assert barely["training"]["step"] == 32  # the whole tiny schedule is shorter than 300 steps
    # each row's fit: its outputs against the 16 training photos (the val split has 6), resized as
    # at test time; the fit of a run is measured once and kept beside it
    for r in report["rows"]:
        assert r["fit"]["split"] == "train" and r["fit"]["images"] == 16
        assert 0 < r["fit"]["image"]["l1"] < 1 and r["fit"]["image"]["l1"] != r["scores"]["image"]["l1"]
        assert json.loads((tmp_path / r["run"] / "fit-train.json").read_text()) == r["fit"]
    assert not any("fit" in c for c in report["controls"])  # the report shows no fit for them: none is measured
    assert not any((tmp_path / c["run"] / "fit-train.json").exists() for c in report["controls"])
    text = path.read_text()
    first = report["rows"][0]
    gap = first["scores"]["image"]["l1"] - first["fit"]["image"]["l1"]
    assert f"| L1 | {first['scores']['image']['l1']:.4f} |" in text
    assert f"| {gap:+.4f} |" in text
    colour = first["scores"]["color"]
    assert f"| {colour['hist_L']:.2f} / {colour['hist_a']:.2f} / {colour['hist_b']:.2f} |" in text
    assert "| Control: one blank image for every input (the layout prior) |" in text
    assert "The segmenter separates real photos from the controls" in text or "does NOT separate" in text
    # the blank generator really is blank: every output pixel mid-grey
    import numpy as np
    from PIL import Image

    out = np.asarray(Image.open(tmp_path / blank["run"] / "eval-label2photo" / "images" / "0000_output.png"))
    assert (out == 128).all()
    # figure7 shares the L1, cGAN and L1+cGAN runs: it takes their colour scores as table1 left them,
    # and leaves their FCN scores in place (no second scoring, nothing overwritten)
    kept = {r["row"]: (tmp_path / r["run"] / "eval-label2photo.json").read_bytes() for r in report["rows"]}
    colours = reproduce("figure7", city, tmp_path, protocol="reduced", device="cpu", extra=tiny, progress=False)
    figure7 = json.loads(colours.with_suffix(".json").read_text())
    for r in figure7["rows"][:3]:
        assert (tmp_path / r["run"] / "eval-label2photo.json").read_bytes() == kept[r["row"]]
        table1_row = next(t for t in report["rows"] if t["row"] == r["row"])
        assert r["scores"]["color"] == table1_row["scores"]["color"]


def test_the_seeds_set_reuses_table1s_runs_and_reports_the_spread() -> None:
    from pix2pix.experiments.reproduce import row_config, run_name, seed_spread

    def name(set_name: str, row: str) -> str:
        exp = SETS[set_name]
        return run_name(row_config(exp, next(r for r in exp.rows if r.name == row), "data", "reduced"))

    # seed 0 is the default, so those rows are Table 1's runs; other seeds are new runs
    assert name("seeds", "L1+cGAN (seed 0)") == name("table1", "L1+cGAN")
    assert name("seeds", "L1 (seed 0)") == name("table1", "L1")
    assert len({name("seeds", r.name) for r in SETS["seeds"].rows}) == 6

    def row(row_name: str, iou: float | None) -> dict:
        scores = {"fcn": {"pixel_acc": 0.5, "class_iou": iou}} if iou is not None else {}
        return {"row": row_name, "run": "r", "paper": None, "training": {}, "scores": scores}

    report = {
        "metric_names": ["pixel_acc", "class_iou"],
        "rows": [row("L1 (seed 0)", 0.25), row("L1 (seed 1)", 0.28), row("L1 (seed 2)", 0.22), row("GAN", 0.1)]
        + [row("cGAN (seed 0)", 0.2), row("cGAN (seed 1)", None)],  # one scored seed: no spread
    }
    [l1] = seed_spread(report)
    assert l1["row"] == "L1" and l1["seeds"] == 3
    assert l1["mean"] == pytest.approx([0.5, 0.25]) and l1["range"] == pytest.approx([0.0, 0.06])
    report["spread"] = [l1]
    report.update(title="t", protocol="reduced", machine="m", date="d", version="v", command="c", reduced={}, extra={})
    text = format_report({**report, "ground_truth_paper": None}, SETS["seeds"])
    assert "| L1 | 3 | 0.500 / 0.250 | 0.000 / 0.060 |" in text


def test_reports_name_the_cpu_and_the_kernels_it_ran() -> None:
    """Reports from AVX2 and AVX-512 machines differ in their last digits: each says which it was."""
    from pix2pix.experiments.reproduce import machine

    described = machine()
    assert f"{torch.backends.cpu.get_cpu_capability()} kernels" in described
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("model name"))
        assert model.split(":", 1)[1].strip() in described


def test_a_stopped_reproduce_says_to_run_the_same_command(city: Path, tmp_path: Path, monkeypatch, capsys) -> None:  # noqa: F811
    import pix2pix.experiments.reproduce as reproduce_module
    from pix2pix.cli import main

    monkeypatch.setattr(reproduce_module, "train_row", lambda *args, **kwargs: False)  # as after a SIGTERM mid-row
    code = main(["reproduce", "table6", "--data", str(city), "--out", str(tmp_path), "--train-only", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130 and "run the same command again to continue" in err and "train --resume" not in err


def test_reproduce_trains_the_segmenter_once_and_names_it_by_its_recipe(city: Path, tmp_path: Path) -> None:  # noqa: F811
    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    path = reproduce("augmentation", city, tmp_path, device="cpu", extra=tiny, segmenter_steps=4, progress=False)
    folder = tmp_path / "segmenter-32px-4steps"
    report = json.loads(path.with_suffix(".json").read_text())
    assert json.loads((folder / "done.json").read_text())["steps"] == 4
    # the report names it relative to the output folder (no path of this machine in a report)
    assert {r["scores"]["segmenter"] for r in report["rows"]} == {folder.name}
    assert str(tmp_path) not in path.read_text() and str(tmp_path) not in path.with_suffix(".json").read_text()
    kept = (folder / "done.json").stat().st_mtime_ns
    reproduce("augmentation", city, tmp_path, device="cpu", extra=tiny, segmenter_steps=4, progress=False)
    assert (folder / "done.json").stat().st_mtime_ns == kept  # found, not trained again
    assert [p.name for p in tmp_path.glob("segmenter-*")] == [folder.name]


def test_the_longer_set_validates_every_epoch_and_reports_curves_and_moves(
    city: Path,  # noqa: F811
    segmenter: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import shutil

    from pix2pix.experiments.reproduce import control_configs, row_config, run_name

    # the committed seeds report beside the output: the rule's spreads for the pairs' moves
    shutil.copy(Path(__file__).resolve().parents[2] / "reports" / "seeds-reduced.json", tmp_path)
    # 16 tiny training pairs: one epoch is 16 steps at batch 1; 2 + 2 epochs (the set's 5 + 5,
    # shortened for the test through `extra`, which comes last) are 64 steps
    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    tiny["val_every"] = 16
    short = {**tiny, "epochs": 2, "epochs_decay": 2}
    path = reproduce("table1_longer", city, tmp_path, segmenter=segmenter, device="cpu", extra=short, progress=False)
    report = json.loads(path.with_suffix(".json").read_text())
    assert [r["training"]["step"] for r in report["rows"]] == [64, 64, 64]
    for name, points in report["curves"].items():
        assert [p["epoch"] for p in points] == [1.0, 2.0, 3.0, 4.0], name
        assert all(0 <= p["class_iou"] <= 1 and 0 < p["hist_a"] <= 1 for p in points)
    moves = report["verdicts"]["movement"]
    assert [(m["a"], m["b"]) for m in moves] == [("L1", "cGAN"), ("L1", "L1+cGAN"), ("cGAN", "L1+cGAN")]
    assert all(m["epochs"] == [2.0, 4.0] for m in moves)
    text = path.read_text()
    assert "| epoch | L1 class IoU | L1 L / a / b |" in text and "with training |" in text
    # the segmenter folder is not part of a run's name; the controls are every set's controls
    cfg = row_config(SETS["table1_longer"], SETS["table1_longer"].rows[0], city, "reduced", "cpu", tiny, segmenter)
    elsewhere = row_config(SETS["table1_longer"], SETS["table1_longer"].rows[0], city, "reduced", "cpu", tiny, "/x")
    assert run_name(cfg) == run_name(elsewhere) and cfg.run.segmenter == str(segmenter)
    assert cfg.optim.epochs == 5 and cfg.optim.epochs_decay == 5
    same = control_configs(SETS["table1"], city, "reduced", "cpu", tiny)
    longer = control_configs(SETS["table1_longer"], city, "reduced", "cpu", tiny)
    assert [run_name(c) for _, c in longer] == [run_name(c) for _, c in same]
