from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pix2pix.models.networks import build_networks
from pix2pix.training import checkpoint as ckpt
from pix2pix.training.checkpoint import STATE_FILE, load_state
from pix2pix.training.run import RunDirError
from pix2pix.training.train import config_for_resume, lr_factor, train

from ..conftest import shared_dataset, tiny_config


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_state(run_dir / STATE_FILE)
    weights = {f"G.{k}": v for k, v in state["generator"].items()}
    if state["discriminator"] is not None:
        weights |= {f"D.{k}": v for k, v in state["discriminator"].items()}
    return weights


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_resume_is_bitwise_exact(tiny_data: Path, tmp_path: Path) -> None:
    # 6 steps per epoch (12 images, batch 2): stopping at 4 resumes mid-epoch, and the run then
    # crosses the epoch boundary, where the learning-rate schedule steps.
    full = tmp_path / "full"
    train(tiny_config(tiny_data, max_steps=8), full, progress=False)
    split = tmp_path / "split"
    first = train(tiny_config(tiny_data, max_steps=4), split, progress=False)
    assert first["step"] == 4
    assert not torch.equal(_weights(split)["G.head.1.weight"], _weights(full)["G.head.1.weight"])
    second = train(config_for_resume(split, {"max_steps": 8}), split, resume=True, progress=False)
    assert second["step"] == 8 and second["epoch"] == 1
    _assert_bitwise_equal(_weights(split), _weights(full))
    # both optimisers' moments match too, not only the weights
    sa, sb = load_state(split / STATE_FILE), load_state(full / STATE_FILE)
    for name in ("opt_g", "opt_d"):
        for k, v in sa[name]["state"].items():
            assert torch.equal(v["exp_avg_sq"], sb[name]["state"][k]["exp_avg_sq"])
    # the log of the resumed run reads as one run: steps 1..8, once each
    steps = [json.loads(line)["step"] for line in (split / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))


@pytest.mark.slow  # torch.compile / a real kill: tens of seconds on the CPU
def test_sigkill_mid_run_resumes_from_last_checkpoint(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "pix2pix",
        "train",
        "--data",
        str(tiny_data),
        "--run-dir",
        str(run_dir),
        "--load-size",
        "72",
        "--crop-size",
        "64",
        "--g-channels",
        "8",
        "--d-channels",
        "8",
        "--batch-size",
        "1",
        "--epochs",
        "20",
        "--epochs-decay",
        "0",
        "--workers",
        "0",
        "--checkpoint-every",
        "3",
        "--sample-every",
        "1000",
        "--max-steps",
        "120",
        "--deterministic",
        "--device",
        "cpu",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            state_file = run_dir / STATE_FILE
            if state_file.exists() and load_state(state_file)["step"] >= 9:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    saved_step = load_state(run_dir / STATE_FILE)["step"]
    assert 9 <= saved_step < 120 and saved_step % 3 == 0

    resumed = subprocess.run(
        [sys.executable, "-m", "pix2pix", "train", "--resume", str(run_dir), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_state(run_dir / STATE_FILE)["step"] == 120
    assert not list(run_dir.glob("*.tmp")), "a temporary file of a write cut short was left behind"
    # same weights as the same run never interrupted
    reference = tmp_path / "reference"
    uninterrupted = args[:]
    uninterrupted[uninterrupted.index(str(run_dir))] = str(reference)
    done = subprocess.run(uninterrupted, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    _assert_bitwise_equal(_weights(run_dir), _weights(reference))


def test_interrupted_checkpoint_write_keeps_last_good_one(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config(tiny_data, max_steps=2), run_dir, progress=False)
    good = (run_dir / STATE_FILE).read_bytes()

    def dying_save(obj, f, *args, **kwargs):  # writes half a file, then the process "dies"
        f.write(good[: len(good) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(config_for_resume(run_dir, {"max_steps": 4}), run_dir, resume=True, progress=False)
    assert (run_dir / STATE_FILE).read_bytes() == good
    assert load_state(run_dir / STATE_FILE)["step"] == 2
    assert not list(run_dir.glob("*.tmp"))


@pytest.mark.parametrize("objective", ["l1", "gan", "cgan", "l1+gan", "l1+cgan", "l2", "l1+l2", "l1+l2+cgan"])
def test_every_objective_trains(tiny_data: Path, tmp_path: Path, objective: str) -> None:
    summary = train(tiny_config(tiny_data, objective=objective, max_steps=2), tmp_path / "r", progress=False)
    losses = summary["losses"]
    assert ("g_l1" in losses) == ("l1" in objective.split("+"))
    assert ("g_l2" in losses) == ("l2" in objective)
    assert ("d_real" in losses) == ("gan" in objective)
    state = load_state(tmp_path / "r" / STATE_FILE)
    if "gan" in objective:
        # GAN: D sees the output only (3 channels); cGAN: input and output (6 channels)
        first = state["discriminator"]["model.0.weight"]
        assert first.shape[1] == (6 if "cgan" in objective else 3)
    else:
        assert state["discriminator"] is None and state["opt_d"] is None  # L1 only: no D at all


def test_training_reduces_l1_on_tiny_data(tiny_data: Path, tmp_path: Path) -> None:
    train(
        tiny_config(
            tiny_data, objective="l1", g_channels=8, epochs=30, epochs_decay=0, max_steps=150, deterministic=False
        ),
        tmp_path / "r",
        progress=False,
    )
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    early = sum(r["g_l1"] for r in log[:5]) / 5
    late = sum(r["g_l1"] for r in log[-5:]) / 5
    assert late < 0.7 * early


def test_l1_warmup_trains_no_discriminator_first(tiny_data: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tiny_data, l1_warmup_epochs=1, max_steps=9)
    train(cfg, tmp_path / "r", progress=False)
    log = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    assert all("d_real" not in r and "g_gan" not in r for r in log if r["epoch"] == 0)
    assert all("d_real" in r and "g_gan" in r for r in log if r["epoch"] == 1)
    assert {r["epoch"] for r in log} == {0, 1}


def test_learning_rate_constant_then_linear_decay() -> None:
    from pix2pix.config import TrainConfig

    optim = TrainConfig.from_dict({"epochs": 100, "epochs_decay": 100}).optim

    def factor(epoch: int) -> float:
        return lr_factor(epoch, optim)

    assert factor(0) == factor(99) == 1.0
    assert factor(100) == pytest.approx(1 - 1 / 101)
    assert factor(199) == pytest.approx(1 / 101)
    decay = [factor(e) for e in range(100, 200)]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    warm = TrainConfig.from_dict({"epochs": 2, "epochs_decay": 2, "l1_warmup_epochs": 3}).optim
    assert [lr_factor(e, warm) for e in range(7)] == pytest.approx([1, 1, 1, 1, 1, 2 / 3, 1 / 3])


def test_run_directory_is_never_silently_overwritten(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    train(tiny_config(tiny_data, max_steps=1), run_dir, progress=False)
    before = (run_dir / STATE_FILE).read_bytes()
    with pytest.raises(RunDirError, match="already holds a run"):
        train(tiny_config(tiny_data, max_steps=1), run_dir, progress=False)
    assert (run_dir / STATE_FILE).read_bytes() == before
    with pytest.raises(RunDirError, match="lambda_l1"):
        train(tiny_config(tiny_data, lambda_l1=10.0, max_steps=2), run_dir, resume=True, progress=False)
    summary = train(tiny_config(tiny_data, max_steps=2, seed=5), run_dir, overwrite=True, progress=False)
    assert summary["step"] == 2


def test_run_writes_config_log_samples_and_release_model(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    train(tiny_config(tiny_data, max_steps=3, sample_every=2), run_dir, progress=False)
    assert json.loads((run_dir / "config.json").read_text())["crop_size"] == 32
    record = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    assert {"step", "epoch", "lr", "g_gan", "g_l1", "d_real", "d_fake", "images_per_s"} <= record.keys()
    samples = sorted((run_dir / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["step_0000002.png", "step_0000003.png"]
    from PIL import Image

    grid = Image.open(samples[0])
    assert grid.size == (3 * 32, 2 * 32)  # input | output | target, one row per val image
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["architecture"] == "unet" and config["generator"]["depth"] == 5
    weights = load_file(str(run_dir / "model" / "model.safetensors"))
    state = load_state(run_dir / STATE_FILE)
    assert all(torch.equal(weights[k], v) for k, v in state["generator"].items())


def test_build_networks_follows_config(tiny_data: Path) -> None:
    g, d = build_networks(tiny_config(tiny_data, receptive_field=16, skips=False))
    assert not g.skips and d.receptive_field == 16
    g, d = build_networks(tiny_config(tiny_data, generator="resnet", resnet_blocks=6))
    assert sum(type(m).__name__ == "ResnetBlock" for m in g.modules()) == 6


def test_trains_on_real_cityscapes_at_full_size(tmp_path: Path) -> None:
    """`pix2pix train --data ../shared/data/cityscapes --direction BtoA` at the paper's 256 px."""
    data = shared_dataset("cityscapes")
    from pix2pix.config import TrainConfig

    cfg = TrainConfig.from_dict(
        {"data": str(data), "direction": "BtoA", "max_steps": 2, "workers": 0, "num_samples": 1, "device": "cpu"}
    )
    summary = train(cfg, tmp_path / "city", progress=False)
    assert summary["step"] == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in summary["losses"].values())
    from PIL import Image

    assert Image.open(tmp_path / "city" / "samples" / "step_0000002.png").size == (3 * 256, 256)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_after_a_whole_step_with_a_checkpoint(tiny_data: Path, tmp_path: Path, sig) -> None:
    run_dir = tmp_path / "stopped"
    args = [
        sys.executable, "-m", "pix2pix", "train", "--data", str(tiny_data), "--run-dir", str(run_dir),
        "--load-size", "72", "--crop-size", "64", "--g-channels", "8", "--d-channels", "8", "--batch-size", "1",
        "--workers", "0", "--checkpoint-every", "1000", "--log-every", "1", "--max-steps", "400", "--device", "cpu",
        "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    log = run_dir / "log.jsonl"
    while time.monotonic() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = load_state(run_dir / STATE_FILE)["step"]
    assert f"stopped at step {saved}" in out and "--resume" in out
    assert 3 <= saved < 400
    assert json.loads(log.read_text().splitlines()[-1])["step"] == saved  # nothing ran past the checkpoint
