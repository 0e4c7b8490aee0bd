"""Watching a run (monitor.py, validation.py): validation metrics in log.jsonl, snapshots, the
best model, TensorBoard files read back with tensorboard's own reader, and one continuous history
across a resume from an earlier checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pix2pix.config import TrainConfig
from pix2pix.training.checkpoint import STATE_FILE
from pix2pix.training.train import config_for_resume, train
from pix2pix.training.validation import higher_is_better, metric_names

from ..conftest import tiny_config

WATCHED = dict(
    epochs=3, epochs_decay=3, max_steps=12, val_every=4, val_images=2, snapshot_every=4, keep_snapshots=2,
    best_metric="val_psnr", sample_every=4, checkpoint_every=4, log_every=2,
)  # fmt: skip


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time", "images_per_s", "val_seconds")} for r in records]


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_validation_snapshots_and_best_model(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(tiny_data, **WATCHED), run, progress=False)
    validations = [r for r in _log(run) if "val_psnr" in r]
    assert [r["step"] for r in validations] == [4, 8, 12]
    assert set(metric_names("image")) <= set(validations[0]) and validations[0]["val_seconds"] > 0
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step_0000008", "step_0000012"]  # keep 2
    best = json.loads((run / "model-best" / "best.json").read_text())
    top = max(validations, key=lambda r: r["val_psnr"])
    assert (best["metric"], best["step"], best["value"]) == ("val_psnr", top["step"], top["val_psnr"])
    card = json.loads((run / "model-best" / "config.json").read_text())
    assert card["step"] == top["step"]


def test_tensorboard_holds_losses_validation_and_samples(tiny_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    train(tiny_config(tiny_data, **WATCHED, tensorboard=True), run, progress=False)
    log = _log(run)
    logged = [(r["step"], r["val_psnr"]) for r in log if "val_psnr" in r]
    board = _scalars(run, "val/psnr")
    assert [s for s, _ in board] == [s for s, _ in logged] == [4, 8, 12]
    assert [v for _, v in board] == pytest.approx([v for _, v in logged], rel=1e-6)  # stored as float32
    assert [s for s, _ in _scalars(run, "loss/g_l1")] == [r["step"] for r in log if "g_l1" in r]
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("samples")] == [4, 8, 12]


def test_a_resume_from_an_earlier_checkpoint_gives_one_continuous_history(tiny_data: Path, tmp_path: Path) -> None:
    """As after a kill -9 at step 12 whose last checkpoint is step 8: the steps after it run again,
    bit for bit, and log.jsonl, snapshots, model-best/ and TensorBoard end as an uninterrupted run's."""
    pytest.importorskip("tensorboard")
    cfg = tiny_config(tiny_data, **WATCHED, tensorboard=True)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train(cfg, whole, progress=False)
    train(cfg.replace(max_steps=8), cut, progress=False)
    saved = (cut / STATE_FILE).read_bytes()  # the checkpoint of step 8
    train(config_for_resume(cut, {"max_steps": 12}), cut, resume=True, progress=False)
    (cut / STATE_FILE).write_bytes(saved)  # "killed" after step 12, before its checkpoint
    train(config_for_resume(cut, {"max_steps": 12}), cut, resume=True, progress=False)

    assert _without_timings(_log(cut)) == _without_timings(_log(whole))
    assert _scalars(cut, "val/psnr") == _scalars(whole, "val/psnr") and len(_scalars(cut, "val/psnr")) == 3
    assert [s for s, _ in _scalars(cut, "loss/g_gan")] == [s for s, _ in _scalars(whole, "loss/g_gan")]
    assert sorted(p.name for p in (cut / "snapshots").iterdir()) == sorted(
        p.name for p in (whole / "snapshots").iterdir()
    )
    assert (cut / "model-best" / "best.json").read_text() == (whole / "model-best" / "best.json").read_text()
    for name in ("model.safetensors",):
        assert (cut / "model-best" / name).read_bytes() == (whole / "model-best" / name).read_bytes()


def test_a_best_model_of_lost_steps_is_not_kept(tiny_data: Path, tmp_path: Path) -> None:
    """Without --deterministic the replayed steps differ a little from the lost ones: a best found
    after the checkpoint must not survive the resume, or model-best/ would hold weights the log
    no longer has. It waits in .model-best.pending/ until the next checkpoint."""
    cfg = tiny_config(tiny_data, **WATCHED)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    train(cfg, whole, progress=False)
    train(cfg.replace(max_steps=8), cut, progress=False)
    saved_state = (cut / STATE_FILE).read_bytes()
    shutil.copytree(cut / "model-best", tmp_path / "best-at-8")
    train(config_for_resume(cut, {"max_steps": 12}), cut, resume=True, progress=False)
    # "killed" after a validation at step 12 found a (here: impossibly) better model, before the checkpoint
    (cut / STATE_FILE).write_bytes(saved_state)
    shutil.rmtree(cut / "model-best")
    shutil.copytree(tmp_path / "best-at-8", cut / "model-best")
    shutil.copytree(cut / "model-best", cut / ".model-best.pending")
    (cut / ".model-best.pending" / "best.json").write_text('{"metric": "val_psnr", "value": 999.0, "step": 12}')
    train(config_for_resume(cut, {"max_steps": 12}), cut, resume=True, progress=False)
    assert (cut / "model-best" / "best.json").read_text() == (whole / "model-best" / "best.json").read_text()
    assert not (cut / ".model-best.pending").exists()


def test_bad_watch_options_are_refused_before_training(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs --val-every"):
        TrainConfig.from_dict({"best_metric": "val_psnr"})
    with pytest.raises(ValueError, match="this run's validation logs val_l1"):
        train(
            tiny_config(tiny_data, val_every=2, best_metric="val_fcn_class_iou", max_steps=2),
            tmp_path / "r",
            progress=False,
        )
    assert higher_is_better("val_eval_fcn_class_iou") and not higher_is_better("val_l1")


def test_resume_without_snapshots_beyond_the_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, **{**WATCHED, "keep_snapshots": 0, "checkpoint_every": 8})
    train(cfg.replace(max_steps=8), run, progress=False)
    saved = (run / STATE_FILE).read_bytes()
    train(config_for_resume(run, {"max_steps": 12}), run, resume=True, progress=False)
    (run / STATE_FILE).write_bytes(saved)
    (run / "snapshots" / "step_0000012" / "config.json").unlink()  # a snapshot cut short by the kill
    train(config_for_resume(run, {"max_steps": 12}), run, resume=True, progress=False)
    assert (run / "snapshots" / "step_0000012" / "config.json").is_file()


def _wandb_history(run: Path) -> list[dict[str, str]]:
    """The history records of every offline W&B run folder under RUN/wandb, read from W&B's own
    files: a LevelDB-format log (32 KiB blocks, 7-byte record headers) of wandb's Record protobufs."""
    import struct

    from wandb.proto import wandb_internal_pb2

    history = []
    for path in sorted((run / "wandb").glob("offline-run-*/run-*.wandb")):
        data, pos, pieces, block = path.read_bytes(), 7, [], 32768
        while pos + 7 <= len(data):
            if block - pos % block < 7:  # a block's tail too short for a header is padding
                pos += block - pos % block
                continue
            _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
            pieces = [chunk] if kind in (1, 2) else [*pieces, chunk]  # full / first, then middle / last
            if kind in (1, 4):
                record = wandb_internal_pb2.Record()
                record.ParseFromString(b"".join(pieces))
                if record.WhichOneof("record_type") == "history":
                    history.append({i.key or "/".join(i.nested_key): i.value_json for i in record.history.item})
    return history


def test_wandb_offline_logs_the_same_points_and_continues_on_resume(
    tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_config(tiny_data, **WATCHED, wandb="pix2pix-test")
    run = tmp_path / "run"
    train(cfg.replace(max_steps=8), run, progress=False)
    run_id = (run / "wandb_id").read_text().strip()
    train(config_for_resume(run, {"max_steps": 12}), run, resume=True, progress=False)
    assert (run / "wandb_id").read_text().strip() == run_id  # the same W&B run continues
    assert len(list((run / "wandb").glob(f"offline-run-*-{run_id}"))) == 2  # one folder per process
    history = _wandb_history(run)
    psnr = [(int(h["_step"]), float(h["val/psnr"])) for h in history if "val/psnr" in h]
    logged = [(r["step"], r["val_psnr"]) for r in _log(run) if "val_psnr" in r]
    assert [s for s, _ in psnr] == [s for s, _ in logged] == [4, 8, 12]  # none missing, none twice
    assert [v for _, v in psnr] == pytest.approx([v for _, v in logged])
    assert [int(h["_step"]) for h in history if "samples/path" in h] == [4, 8, 12]
    g_l1 = [int(h["_step"]) for h in history if "loss/g_l1" in h]
    assert g_l1 == [r["step"] for r in _log(run) if "g_l1" in r]


def test_perceptual_validation_uses_the_standard_files_checked_first(
    tiny_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """FID, KID and LPIPS in each validation, from weight files registered under their own hashes
    (random networks: the public registry would refuse them); without the files, a clear error
    before anything trains."""
    import dataclasses
    import hashlib

    import torch

    from pix2pix.metrics import perceptual as features
    from pix2pix.metrics.perceptual import ALEXNET, FID_INCEPTION, LPIPS_ALEX_LINEAR, WeightsMissingError

    watched = {**WATCHED, "max_steps": 4, "best_metric": "val_fid"}
    cfg = tiny_config(tiny_data, **watched, val_perceptual="fid,lpips,kid")
    monkeypatch.setenv("PIX2PIX_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setattr(features, "packaged_copy", lambda name: None)  # an installed lpips must not answer
    with pytest.raises(WeightsMissingError, match=FID_INCEPTION):
        train(cfg, tmp_path / "missing", progress=False)
    assert not (tmp_path / "missing" / "log.jsonl").exists()

    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    registry = dict(features.WEIGHT_FILES)
    nets = {
        FID_INCEPTION: features.FIDInceptionV3(),
        ALEXNET: features.AlexNet(),
        LPIPS_ALEX_LINEAR: features.LPIPSLinearHeads(),
    }
    for name, net in nets.items():
        path = tmp_path / "weights" / name
        torch.save(net.state_dict(), path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        registry[name] = dataclasses.replace(registry[name], size=path.stat().st_size, sha256=digest)
    monkeypatch.setattr(features, "WEIGHT_FILES", registry)
    train(cfg, tmp_path / "run", progress=False)
    validations = [r for r in _log(tmp_path / "run") if "val_psnr" in r]
    assert [r["step"] for r in validations] == [4]
    for key in ("val_fid", "val_kid", "val_lpips", "val_eval_fid", "val_eval_lpips"):
        assert key in validations[0] and validations[0][key] == validations[0][key]  # present, not NaN
    assert validations[0]["val_lpips"] > 0
    best = json.loads((tmp_path / "run" / "model-best" / "best.json").read_text())
    assert (best["metric"], best["value"]) == ("val_fid", validations[0]["val_fid"])
    with pytest.raises(ValueError, match="choose among fid, kid, lpips"):
        tiny_config(tiny_data, val_every=2, val_perceptual="fid,is")
