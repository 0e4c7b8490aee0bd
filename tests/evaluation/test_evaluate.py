"""pix2pix evaluate / train-segmenter / reproduce on a small synthetic street scene set whose
label halves use the real Cityscapes colours, and on real Cityscapes pairs where present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix import metrics
from pix2pix.cli import main
from pix2pix.config import TrainConfig
from pix2pix.data.labels import colors_to_ids, load_palette, to_train_ids
from pix2pix.evaluation.evaluate import evaluate_model
from pix2pix.evaluation.pairs import EvaluationError
from pix2pix.evaluation.segmenter import evaluate_segmenter, train_segmenter
from pix2pix.experiments.reproduce import reproduce
from pix2pix.paper import SETS
from pix2pix.training.train import train

from ..conftest import shared_dataset, tiny_config

# Cityscapes label colours (labels.json) and made-up "photo" colours for four classes
CLASSES = {
    "road": ((128, 64, 128), (90, 90, 95)),
    "vegetation": ((107, 142, 35), (40, 110, 40)),
    "sky": ((70, 130, 180), (200, 220, 250)),
    "car": ((0, 0, 142), (150, 20, 20)),
}


def _scene(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(photo, label map), each (size, size, 3) uint8: sky, vegetation, road bands and a car."""
    cls = np.zeros((size, size), dtype=np.int64)  # indices into CLASSES
    sky_end = rng.integers(size // 5, size // 3)
    veg_end = rng.integers(sky_end + 2, size // 2 + 2)
    cls[:sky_end] = 2
    cls[sky_end:veg_end] = 1
    cls[veg_end:] = 0
    h, w = rng.integers(size // 6, size // 3, size=2)
    top, left = rng.integers(veg_end, size - h), rng.integers(0, size - w)
    cls[top : top + h, left : left + w] = 3
    labels = np.array([c[0] for c in CLASSES.values()], dtype=np.uint8)[cls]
    photo = np.array([c[1] for c in CLASSES.values()], dtype=np.float64)[cls]
    photo = np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8)
    return photo, labels


@pytest.fixture(scope="module")
def city(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train + 6 val aligned pairs photo | label map of 32x32 halves (PNG)."""
    folder = tmp_path_factory.mktemp("city")
    rng = np.random.default_rng(0)
    for split, count in (("train", 16), ("val", 6)):
        (folder / split).mkdir()
        for i in range(count):
            photo, labels = _scene(32, rng)
            Image.fromarray(np.concatenate([photo, labels], axis=1)).save(folder / split / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def segmenter(city: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "segmenter"
    train_segmenter(city, out, size=32, steps=120, channels=8, device="cpu", progress=False)
    return out


def _train_tiny(city: Path, run: Path, direction: str) -> Path:
    cfg = tiny_config(city, direction=direction, batch_size=1, epochs=1, epochs_decay=0)
    train(cfg, run, progress=False)
    return run / "model"


def test_segmenter_learns_the_scenes_and_is_deterministic(city: Path, segmenter: Path, tmp_path: Path) -> None:
    done = json.loads((segmenter / "done.json").read_text())
    val = done["val"]
    # four flat-coloured classes: a working segmenter gets nearly every pixel
    assert val["pixel_acc"] > 0.9, val
    assert sorted(i for i, v in enumerate(val["per_class_iou"]) if v is not None) == [0, 8, 10, 13]
    config = json.loads((segmenter / "config.json").read_text())
    assert config["task"] == "segmenter" and config["crop_size"] == 32
    again = tmp_path / "again"
    train_segmenter(city, again, size=32, steps=120, channels=8, device="cpu", progress=False)
    assert (again / "model.safetensors").read_bytes() == (segmenter / "model.safetensors").read_bytes()


def test_fcn_score_reports_ground_truth_row(city: Path, segmenter: Path, tmp_path: Path) -> None:
    model = _train_tiny(city, tmp_path / "l2p", "BtoA")
    result = evaluate_model(model, city, tmp_path / "eval", segmenter=segmenter, device="cpu")
    assert result["task"] == "label2photo" and result["images"] == 6
    # the ground-truth row is the segmenter on the real photos: the same as its own val score
    truth = evaluate_segmenter(segmenter, city, device="cpu")
    for key in ("pixel_acc", "class_acc", "class_iou"):
        assert result["fcn_ground_truth"][key] == pytest.approx(truth[key])
    # a barely trained G does worse than the real photos
    assert result["fcn"]["pixel_acc"] < result["fcn_ground_truth"]["pixel_acc"]
    assert set(result["color"]) == {"hist_L", "hist_a", "hist_b", "hist_R", "hist_G", "hist_B"}
    assert all(0 <= v <= 1 for v in result["color"].values())
    page = (tmp_path / "eval" / "index.html").read_text()
    assert page.count("<svg") == 6 and page.count('class="row"') == 6
    for kind in ("input", "output", "target", "segmented"):
        assert (tmp_path / "eval" / "images" / f"0000_{kind}.png").is_file()


def test_photo2label_scores_equal_a_recount_of_the_written_outputs(city: Path, tmp_path: Path) -> None:
    model = _train_tiny(city, tmp_path / "p2l", "AtoB")
    out = tmp_path / "eval"
    result = evaluate_model(model, city, out, task="photo2label", gallery=10, device="cpu")
    palette = load_palette("cityscapes")
    hist = np.zeros((19, 20), dtype=np.int64)
    for i, path in enumerate(sorted((city / "val").iterdir())):
        label_half = np.asarray(Image.open(path).convert("RGB"))[:, 32:]
        truth = to_train_ids(colors_to_ids(label_half, palette), palette)
        output = Image.open(out / "images" / f"{i:04d}_output.png")
        hist += metrics.confusion_matrix(to_train_ids(colors_to_ids(output, palette), palette), truth, 19)
    expected = metrics.segmentation_scores(hist)
    for key in ("pixel_acc", "class_acc", "class_iou"):
        assert result["segmentation"][key] == pytest.approx(expected[key])
    assert json.loads((out / "metrics.json").read_text())["segmentation"]["classes"][0] == "road"


def test_evaluate_errors_name_the_problem(city: Path, segmenter: Path, tmp_path: Path) -> None:
    model = _train_tiny(city, tmp_path / "m", "BtoA")
    with pytest.raises(EvaluationError, match="needs a segmenter"):
        evaluate_model(model, city, tmp_path / "e1", task="label2photo", device="cpu")
    with pytest.raises(EvaluationError, match="trained at 32 px but the images are scored at 64 px"):
        evaluate_model(model, city, tmp_path / "e2", size=64, segmenter=segmenter, device="cpu")
    with pytest.raises(EvaluationError, match="not a segmenter model folder"):
        evaluate_model(model, city, tmp_path / "e3", segmenter=model, device="cpu")
    assert main(["evaluate", "--data", str(city)]) == 2


def test_reproduce_table6_writes_report_and_resumes_without_retraining(city: Path, tmp_path: Path, capsys) -> None:
    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    out = tmp_path / "repro"
    path = reproduce("table6", city, out, protocol="reduced", device="cpu", extra=tiny, progress=False)
    report = json.loads(path.with_suffix(".json").read_text())
    assert [r["row"] for r in report["rows"]] == ["L1", "cGAN", "L1+cGAN"]
    assert report["rows"][0]["paper"] == [0.86, 0.42, 0.35]
    text = path.read_text()
    assert "| L1 | " in text and "0.86 / 0.42 / 0.35" in text and "`crop_size = 32`" in text
    assert report["rows"][0]["training"]["step"] == 32 and report["rows"][0]["training"]["seconds"] > 0
    assert "| steps | train s |" in text
    # 16 pairs, 1 + 1 epochs of batch 1: every row trained its whole (reduced) schedule
    states = sorted(out.glob("runs/*/checkpoint.pt"))
    assert len(states) == 3
    for state in states:
        assert json.loads((state.parent / "done.json").read_text())["step"] == 32
    stamps = [s.stat().st_mtime_ns for s in states]
    # a second invocation (e.g. after an interruption) redoes nothing that is finished
    (states[0].parent / "eval-photo2label.json").unlink()
    again = reproduce("table6", city, out, protocol="reduced", device="cpu", extra=tiny, progress=False)
    assert [s.stat().st_mtime_ns for s in states] == stamps
    again_report = json.loads(again.with_suffix(".json").read_text())
    for before, after in zip(report["rows"], again_report["rows"]):  # re-scored: the same numbers
        assert after["scores"]["segmentation"] == before["scores"]["segmentation"]
        assert after["scores"]["image"] == before["scores"]["image"]


def test_reproduce_rejects_unknown_sets_and_settings(city: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown experiment set"):
        reproduce("table9", city, tmp_path)
    assert main(["reproduce", "table6", "--data", str(city), "--out", str(tmp_path), "--set", "crop_sise=32"]) == 2
    assert set(SETS) >= {"table1", "table2", "table3", "table6", "figure7", "losses", "augmentation", "batch_size"}


def test_photo2label_on_real_cityscapes_label_maps(tmp_path: Path) -> None:
    """The label halves of the real val set, scored against themselves through a JPEG
    round trip: nearest-colour mapping must recover nearly every pixel."""
    data = shared_dataset("cityscapes")
    palette = load_palette("cityscapes")
    hist = np.zeros((19, 20), dtype=np.int64)
    for path in sorted((data / "val").iterdir())[:5]:
        label_half = Image.open(path).convert("RGB").crop((256, 0, 512, 256))
        truth = to_train_ids(colors_to_ids(label_half, palette), palette)
        label_half.save(tmp_path / "again.jpg", quality=75)
        again = to_train_ids(colors_to_ids(Image.open(tmp_path / "again.jpg"), palette), palette)
        hist += metrics.confusion_matrix(again, truth, 19)
    assert metrics.segmentation_scores(hist)["pixel_acc"] > 0.97


def test_reproduce_continues_a_row_that_stopped_partway(city: Path, tmp_path: Path) -> None:

    from pix2pix.experiments.reproduce import row_config, run_name

    tiny = {"crop_size": 32, "load_size": 36, "g_channels": 4, "d_channels": 4, "workers": 0, "num_samples": 0}
    exp = SETS["table6"]
    out = tmp_path / "repro"
    cfg = row_config(exp, exp.rows[0], city, "reduced", "cpu", tiny)
    run = out / "runs" / run_name(cfg)
    # the same row stopped after 5 of its 32 steps (as after Ctrl-C: a checkpoint, no done.json)
    train(cfg.replace(max_steps=5, checkpoint_every=5), run, progress=False)
    reproduce("table6", city, out, protocol="reduced", device="cpu", extra=tiny, progress=False)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    # log_every 10: the first run's last line (step 5) is kept and the run goes on from there;
    # a restart from scratch would have overwritten the folder and logged 10, 20, 30, 32 only
    assert steps == [5, 10, 20, 30, 32]
    assert json.loads((run / "done.json").read_text())["step"] == 32


def test_perceptual_metrics_stop_before_translating_when_weights_are_missing(
    city: Path, tmp_path: Path, capsys
) -> None:
    from pix2pix.metrics.perceptual import WeightsMissingError

    model = _train_tiny(city, tmp_path / "m", "BtoA")
    empty = tmp_path / "weights"
    empty.mkdir()
    out = tmp_path / "eval"
    with pytest.raises(WeightsMissingError) as err:
        evaluate_model(model, city, out, perceptual=["fid"], weights=empty, device="cpu")
    message = str(err.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in message and str(empty) in message
    assert "95,628,359" in message or "95628359" in message
    assert not out.exists()  # nothing was translated or written
    code = main(
        [
            "evaluate",
            "--model",
            str(model),
            "--data",
            str(city),
            "--perceptual",
            "lpips",
            "--weights-dir",
            str(empty),
        ]
    )
    assert code == 2 and "alex" in capsys.readouterr().err


def test_label2photo_validation_scores_the_colour_distributions_as_evaluate_does(
    city: Path, segmenter: Path, tmp_path: Path
) -> None:
    # the longer-protocol curves read class IoU and the Lab intersections from the run's log
    cfg = tiny_config(city, direction="BtoA", batch_size=1, epochs=1, epochs_decay=0, val_every=16, val_images=6)
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "segmenter": str(segmenter)})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    last = [r for r in records if "val_hist_L" in r][-1]
    assert {"val_fcn_class_iou", "val_hist_a", "val_eval_hist_b"} <= set(last)
    # eval mode is deterministic: the last validation (after the last step) is evaluate's figure
    scores = evaluate_model(run / "model", city, tmp_path / "eval", mode="eval", segmenter=segmenter, device="cpu")
    for c in "Lab":
        assert last[f"val_eval_hist_{c}"] == pytest.approx(scores["color"][f"hist_{c}"], abs=1e-9)
