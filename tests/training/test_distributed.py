"""Data-parallel training (distributed.py): 2 processes on the CPU (gloo) train like one process
on the global batch, and a run resumes on a different number of processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pix2pix.config import TrainConfig
from pix2pix.data.aligned import EpochSampler
from pix2pix.training.checkpoint import STATE_FILE, load_state, save_state
from pix2pix.training.train import config_for_resume, train

from ..conftest import tiny_config

Job = tuple[TrainConfig, Path, bool]  # (config, run dir, resume)


def _train_jobs(jobs: list[Job]) -> None:
    for cfg, run_dir, resume in jobs:
        train(cfg, run_dir, resume=resume, progress=False)


def _worker(rank: int, store: str, jobs: list[Job]) -> None:
    # a file rendezvous needs no free port; train() finds the group and trains as one of 2
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        _train_jobs(jobs)
    finally:
        dist.destroy_process_group()


def _in_two_processes(tmp_path: Path, jobs: list[Job]) -> None:
    """Run the training jobs, one after another, in 2 processes (spawned, so each starts clean;
    if one fails the other is stopped and the error is raised here)."""
    store = tmp_path / f"store-{len(list(tmp_path.glob('store-*')))}"
    mp.spawn(_worker, args=(str(store), jobs), nprocs=2, join=True)


def _adam_first_step(state: dict, index: int, beta1: float, beta2: float, eps: float) -> torch.Tensor:
    """Adam's first update per unit of lr, m_hat / (sqrt(v_hat) + eps) = g / (|g| + eps), from the
    optimiser's own moments (in float64, so that it adds no rounding of its own)."""
    moments = state["state"][index]
    m_hat = moments["exp_avg"].double() / (1 - beta1)
    v_hat = moments["exp_avg_sq"].double() / (1 - beta2)
    return m_hat / (v_hat.sqrt() + eps)


def _assert_same_step(run: Path, reference: Path, lr: float = 2e-4, betas=(0.5, 0.999), eps: float = 1e-8) -> None:
    """G and D after one step from the same weights: the same gradients, BatchNorm statistics
    and weights, each within the rounding that summing in another order allows.

    - Gradients (Adam's first moment after one step is (1 - beta1) x the gradient): float32 sums
      over thousands of terms in another order (other processes, other SIMD widths) differ by a
      few ulp of the terms' magnitude, so 1e-4 relative plus 1e-5 of the largest gradient.
    - Weights: both runs start from the same weights w0 and take w0 - lr u with u = g / (|g| + eps).
      Where a gradient is float noise (a true 0, e.g. a conv bias in front of instance norm) u is
      +-1 whatever its size, so the two weights may differ by up to lr |u_a - u_b|; on top of that
      the float32 subtraction rounds each weight by half an ulp and u is computed in float32
      (a few ulp of lr). A real mismatch (other initial weights, another update rule) lies far
      outside that bound.
    """
    a, b = load_state(run / STATE_FILE), load_state(reference / STATE_FILE)
    ulp = torch.finfo(torch.float32).eps
    for net, opt in (("generator", "opt_g"), ("discriminator", "opt_d")):
        assert a[net].keys() == b[net].keys()
        params = [k for k in b[net] if "running_" not in k and "num_batches" not in k]  # the optimiser's order
        grads_a = [a[opt]["state"][i]["exp_avg"] / (1 - betas[0]) for i in range(len(params))]
        grads_b = [b[opt]["state"][i]["exp_avg"] / (1 - betas[0]) for i in range(len(params))]
        scale = max(float(g.abs().max()) for g in grads_b)
        for i, (k, ga, gb) in enumerate(zip(params, grads_a, grads_b)):
            name = f"{net} {k}"
            torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, n=name: f"grad of {n}: {m}")
            u_a, u_b = (_adam_first_step(s[opt], i, *betas, eps) for s in (a, b))
            w_a, w_b = a[net][k].double(), b[net][k].double()
            bound = lr * (u_a - u_b).abs() + ulp * torch.maximum(w_a.abs(), w_b.abs()) + 8 * ulp * lr
            excess = (w_a - w_b).abs() - bound
            worst = int(excess.argmax())
            assert float(excess.max()) <= 0, (
                f"weight {name}[{worst}]: {float(w_a.flatten()[worst])!r} vs {float(w_b.flatten()[worst])!r}, "
                f"apart by more than the {float(bound.flatten()[worst]):.3g} that the gradients allow"
            )
        for k in set(b[net]) - set(params):  # BatchNorm running statistics
            torch.testing.assert_close(
                a[net][k], b[net][k], rtol=1e-4, atol=1e-6, msg=lambda m, n=f"{net} {k}": f"{n}: {m}"
            )


def test_sampler_shards_every_step_of_the_epoch_order() -> None:
    def steps(size: int, start: int, world: int, batch: int) -> list[list[int]]:
        """The positions (in the single-process order) each step trains on, all ranks together."""
        order = [i for i, _ in EpochSampler(size, seed=3, epoch=1)]
        ranks = [
            [order.index(i) for i, _ in EpochSampler(size, 3, 1, start, True, r, world, batch)] for r in range(world)
        ]
        assert len({len(r) for r in ranks}) == 1  # every process gets as many batches
        n = len(ranks[0]) // batch
        return [sum((r[k * batch : (k + 1) * batch] for r in ranks), []) for k in range(n)]

    # rank r takes the r-th block of each global batch: together one process's batch of 4
    assert steps(10, 0, world=2, batch=2) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 1]]  # padded from the start
    # one process: the order as ever, the last batch shorter (10 = 4 + 4 + 2)
    assert list(EpochSampler(10, 3, 1, batch_size=4)) == list(EpochSampler(10, 3, 1))
    # resumed at image 6 (e.g. after 3 steps of batch 2), by 3 processes of batch 1
    assert steps(10, 6, world=3, batch=1) == [[6, 7, 8], [9, 0, 1]]
    assert len(EpochSampler(10, 0, 0, start=6, rank=2, world_size=3, batch_size=1)) == 2
    # every image of the epoch once (and only the padding twice), for any number of processes
    for world in (2, 3, 4):
        seen = [p for step in steps(12, 0, world, batch=2) for p in step]
        assert sorted(set(seen)) == list(range(12)) and len(seen) - 12 < 2 * world


def test_one_step_on_two_processes_matches_one_process_on_the_global_batch(tiny_data: Path, tmp_path: Path) -> None:
    # The same two images (positions 0 and 1 of the epoch's order), the same initial weights and
    # the mean loss over both: G, D, their BatchNorm statistics and their gradients must agree.
    # No dropout: one process and two cannot draw the same masks.
    def config(**overrides) -> TrainConfig:
        return tiny_config(tiny_data, max_steps=1, dropout=0.0, g_channels=8, **overrides)

    two = {
        "sync": (config(batch_size=1, sync_batchnorm=True), tmp_path / "two_sync", False),
        "unsync": (config(batch_size=1), tmp_path / "two_unsync", False),
        "instance": (config(batch_size=1, norm="instance"), tmp_path / "two_instance", False),
    }
    _in_two_processes(tmp_path, list(two.values()))
    train(config(batch_size=2), tmp_path / "one", progress=False)
    train(config(batch_size=2, norm="instance"), tmp_path / "one_instance", progress=False)

    # SyncBatchNorm: batch statistics over both processes' images, as over one process's batch
    _assert_same_step(tmp_path / "two_sync", tmp_path / "one")
    # without it each process normalises its one image alone; fine with instance norm ...
    _assert_same_step(tmp_path / "two_instance", tmp_path / "one_instance")
    # ... but not the same step as BatchNorm over the batch of 2
    first_grad = [load_state(tmp_path / r / STATE_FILE)["opt_g"]["state"][0]["exp_avg"] for r in ("two_unsync", "one")]
    assert not torch.allclose(*first_grad, rtol=1e-2)
    with pytest.raises(AssertionError, match="grad of generator"):  # and the comparison sees it
        _assert_same_step(tmp_path / "two_unsync", tmp_path / "one")

    saved = load_state(tmp_path / "two_sync" / STATE_FILE)
    assert saved["world_size"] == 2 and saved["image_in_epoch"] == 2
    assert not any(k.startswith("module.") for k in saved["generator"])  # plain G, loadable anywhere
    log = [json.loads(line) for line in (tmp_path / "two_sync" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1]  # rank 0 alone writes
    one_log = json.loads((tmp_path / "one" / "log.jsonl").read_text())
    for k in ("g_gan", "g_l1", "d_real", "d_fake"):  # the logged losses are the global batch's
        assert abs(log[0][k] - one_log[k]) < 1e-4 * abs(one_log[k]) + 1e-6
    assert (tmp_path / "two_sync" / "samples" / "step_0000001.png").is_file()


def test_resume_on_a_different_number_of_processes(tiny_data: Path, tmp_path: Path) -> None:
    # 12 images, 2 per process: 3 steps per epoch on 2 processes, 6 on one.
    def config(max_steps: int) -> TrainConfig:
        return tiny_config(tiny_data, max_steps=max_steps, epochs=2, epochs_decay=2, dropout=0.5)

    one_then_two, two_then_one = tmp_path / "one_then_two", tmp_path / "two_then_one"
    same_a, same_b = tmp_path / "same_a", tmp_path / "same_b"
    train(config(3), one_then_two, progress=False)  # images 0-5 of epoch 0
    # as the checkpoints of single-process runs were before: batches, one RNG state
    old = dict(load_state(one_then_two / STATE_FILE))
    del old["image_in_epoch"], old["world_size"], old["rng_per_rank"]
    save_state(one_then_two / STATE_FILE, old | {"batch_in_epoch": 3})
    _in_two_processes(
        tmp_path,
        [
            (config(2), two_then_one, False),  # images 0-7 of epoch 0
            # images 6-9, then 10, 11 and 2 padded: the epoch ends at step 5
            (config_for_resume(one_then_two, {"max_steps": 5}), one_then_two, True),
            # dropout differs per process, reproducibly: 2 + 2 steps resumed = 4 steps
            (config(4), same_a, False),
            (config(2), same_b, False),
            (config(4), same_b, True),
        ],
    )
    train(config_for_resume(two_then_one, {"max_steps": 5}), two_then_one, resume=True, progress=False)

    # an old single-process checkpoint continued by 2 processes
    state = load_state(one_then_two / STATE_FILE)
    assert (state["step"], state["epoch"], state["image_in_epoch"], state["world_size"]) == (5, 1, 0, 2)
    assert state["sched_g"]["last_epoch"] == 1  # the learning rate schedule stepped at the epoch's end
    # 2 processes' checkpoint continued by one: images 8-9, 10-11 end the epoch (step 4), then 0-1
    state = load_state(two_then_one / STATE_FILE)
    assert (state["step"], state["epoch"], state["image_in_epoch"], state["world_size"]) == (5, 1, 2, 1)
    for run in (one_then_two, two_then_one):
        steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
        assert steps == [1, 2, 3, 4, 5]

    a, b = load_state(same_a / STATE_FILE), load_state(same_b / STATE_FILE)
    assert all(torch.equal(v, b["generator"][k]) for k, v in a["generator"].items())
    assert all(torch.equal(v, b["discriminator"][k]) for k, v in a["discriminator"].items())
    rank0, rank1 = a["rng_per_rank"]
    assert not torch.equal(rank0["torch"], rank1["torch"])  # each process its own dropout noise


def test_torchrun_runs_the_cli_and_stops_every_process_after_the_same_step(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "pix2pix", "train", "--data", str(tiny_data), "--run-dir", str(run_dir),
        "--load-size", "36", "--crop-size", "32", "--g-channels", "4", "--d-channels", "4",
        "--batch-size", "1", "--sync-batchnorm", "--workers", "0", "--log-every", "1", "--epochs", "1000",
        "--checkpoint-every", "100000", "--device", "cpu", "--deterministic", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run_dir / "log.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    out, err = proc.communicate(timeout=60)
    state = load_state(run_dir / STATE_FILE)
    saved = state["step"]
    assert out.count(f"stopped at step {saved}") == 1, err  # rank 0 reports, once
    assert (state["world_size"], state["epoch"], state["image_in_epoch"]) == (2, 2 * saved // 12, 2 * saved % 12)
    assert json.loads(log.read_text().splitlines()[-1])["step"] == saved  # no process ran past the checkpoint


@pytest.mark.slow  # torch.compile / a real kill: tens of seconds on the CPU
def test_compiled_ddp_step_matches_one_process_on_the_global_batch(tiny_data: Path, tmp_path: Path) -> None:
    # --compile under DDP (torch.compile of the DDP-wrapped G and D): one step on 2 x batch 1
    # with instance norm is one eager step on batch 2, as without compile
    def config(**overrides) -> TrainConfig:
        return tiny_config(tiny_data, max_steps=1, dropout=0.0, g_channels=8, norm="instance", **overrides)

    _in_two_processes(tmp_path, [(config(batch_size=1, compile="default"), tmp_path / "two_compiled", False)])
    train(config(batch_size=2), tmp_path / "one", progress=False)
    _assert_same_step(tmp_path / "two_compiled", tmp_path / "one")
