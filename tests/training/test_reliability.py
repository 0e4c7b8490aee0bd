"""Bad input and failing disks (issue 12): every case ends in one message that names the file or
option and the problem, never a traceback, and nothing the user had is lost or overwritten."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pix2pix.cli import main
from pix2pix.data.shapes import make_shapes_dataset
from pix2pix.hub.folder import load_model
from pix2pix.hub.model_config import CheckpointError
from pix2pix.training.checkpoint import STATE_FILE, load_state
from pix2pix.training.run import DiskFullError
from pix2pix.training.train import TrainingDiverged, config_for_resume, train

from ..conftest import tiny_config


def bomb_png() -> bytes:
    """A PNG whose header claims 100000 x 100000 RGB pixels."""
    from ..serve.test_demo import png_header_only

    return png_header_only(100_000, 100_000)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A fresh copy of the tiny shapes set that a test may spoil."""
    return make_shapes_dataset(tmp_path / "data", train=6, val=2, size=32, seed=1)


def tiny_model(folder: Path) -> Path:
    from ..serve.test_demo import save_tiny_model

    return save_tiny_model(folder)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


TRAIN = ("train", "--load-size", "36", "--crop-size", "32", "--g-channels", "4", "--d-channels", "4")
TRAIN += ("--workers", "0", "--device", "cpu", "--no-progress", "--num-samples", "1")


# --- images that are not what they claim -------------------------------------------------------


def test_a_decompression_bomb_is_one_more_named_problem(data: Path, tmp_path: Path, capsys) -> None:
    (data / "train" / "bomb.png").write_bytes(bomb_png())
    (data / "train" / "empty.png").write_bytes(b"")
    for fast in ([], ["--fast"]):
        code, out, err = run_cli(capsys, "data", "check", data, *fast)
        assert code != 0 and "Traceback" not in out + err
        assert "bomb.png: its header claims 10,000,000,000 pixels, over the" in out
        assert "empty.png: empty file" in out  # the other bad files are still reported
    code, _, err = run_cli(capsys, *TRAIN, "--data", data, "--run-dir", tmp_path / "run", "--max-steps", "1")
    assert code == 2 and "bomb.png: its header claims" in err and "empty.png" in err
    assert not (tmp_path / "run" / "config.json").exists()
    code, _, _ = run_cli(
        capsys, *TRAIN, "--data", data, "--run-dir", tmp_path / "run", "--max-steps", "1", "--skip-bad"
    )
    assert code == 0
    assert "bomb.png" in (tmp_path / "run" / "skipped.txt").read_text()
    code, _, err = run_cli(
        capsys, "translate", "--model", tiny_model(tmp_path / "m"), data / "train" / "bomb.png", "--out", tmp_path / "o"
    )
    assert code == 2 and "bomb.png: its header claims" in err


def _read_as_nobody(path: str, answer) -> None:
    os.setgid(65534)
    os.setuid(65534)  # from here on this process is an ordinary user: root could read anything
    from pix2pix.data.images import ImageError, read_image

    try:
        read_image(path)
        answer.send("read")
    except ImageError as err:
        answer.send(str(err))


def test_permission_denied_is_not_called_corrupt(data: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to drop to an unprivileged user for whom the file is unreadable")
    import multiprocessing

    locked = data / "train" / "0000.png"
    locked.chmod(0)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_read_as_nobody, args=(str(locked), send))
    child.start()
    child.join(30)
    message = receive.recv()
    assert message == f"{locked}: permission denied (this user may not read the file)"


def test_translate_of_a_five_channel_array_names_the_file(tmp_path: Path, capsys) -> None:
    array = tmp_path / "bands.npy"
    np.save(array, np.zeros((32, 32, 5), np.uint8))
    code, _, err = run_cli(capsys, "translate", "--model", tiny_model(tmp_path / "m"), array, "--out", tmp_path / "o")
    assert code == 2 and f"{array}: " in err and "5" in err


def test_a_newline_in_a_file_name_keeps_report_lines_whole(data: Path, capsys) -> None:
    (data / "train" / "new\nline.png").write_bytes(b"")
    code, out, _ = run_cli(capsys, "data", "check", data)
    assert code != 0
    line = next(line for line in out.splitlines() if "line.png" in line)
    assert "new\\nline.png: empty file" in line


def test_dangling_and_looping_symlinks_in_a_dataset_are_reported(data: Path, tmp_path: Path, capsys) -> None:
    (data / "train" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (data / "train" / "loop.png").symlink_to(data / "train" / "loop.png")
    code, out, _ = run_cli(capsys, "data", "check", data)
    assert code != 0
    assert "gone.png: a dangling symbolic link: it points to" in out
    assert "loop.png: a symbolic link that loops back on itself" in out
    code, _, err = run_cli(capsys, *TRAIN, "--data", data, "--run-dir", tmp_path / "run", "--max-steps", "1")
    assert code == 2 and "gone.png" in err and "loop.png" in err


def test_translate_writes_only_inside_out(data: Path, tmp_path: Path, capsys) -> None:
    model = tiny_model(tmp_path / "m")
    out = tmp_path / "out"
    out.mkdir()
    target = tmp_path / "elsewhere" / "victim.png"
    (out / "0000.png").symlink_to(target)  # dangling: exists() says False
    code, _, err = run_cli(capsys, "translate", "--model", model, data / "val" / "0000.png", "--out", out)
    assert code == 2 and "0000.png exists" in err
    code, _, _ = run_cli(capsys, "translate", "--model", model, data / "val" / "0000.png", "--out", out, "--overwrite")
    assert code == 0 and not target.exists()
    assert (out / "0000.png").is_file() and not (out / "0000.png").is_symlink()
    # a sub-folder of --out that is a link to somewhere else
    (tmp_path / "outside").mkdir()
    (data / "nested").mkdir()
    shutil.copy(data / "val" / "0000.png", data / "nested" / "a.png")
    (data / "nested" / "sub").mkdir()
    shutil.copy(data / "val" / "0001.png", data / "nested" / "sub" / "b.png")
    out2 = tmp_path / "out2"
    out2.mkdir()
    (out2 / "sub").symlink_to(tmp_path / "outside")
    code, _, err = run_cli(capsys, "translate", "--model", model, data / "nested", "--out", out2)
    assert code == 2 and "leads outside" in err
    assert not list((tmp_path / "outside").iterdir())


# --- layouts and configurations ----------------------------------------------------------------


def test_a_folders_layout_is_not_trained_as_aligned_pairs(tmp_path: Path, capsys) -> None:
    data = tmp_path / "folders"
    rng = np.random.default_rng(0)
    from PIL import Image

    for split in ("train", "val"):
        for side in ("A", "B"):
            (data / split / side).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(data / split / side / f"{i}.png")
    code, _, err = run_cli(capsys, *TRAIN, "--data", data, "--run-dir", tmp_path / "run", "--max-steps", "1")
    assert code == 2 and "A/ and B/" in err and "--dataset-mode folders" in err
    assert not (tmp_path / "run").exists()
    code, _, _ = run_cli(
        capsys, *TRAIN, "--data", data, "--run-dir", tmp_path / "run", "--max-steps", "1", "--dataset-mode", "folders"
    )
    assert code == 0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--checkpoint-every", "0"], "--checkpoint-every"),
        (["--log-every", "0"], "--log-every"),
        (["--sample-every", "0"], "--sample-every"),
        (["--epochs-decay", "-1"], "--epochs-decay"),
        (["--num-samples", "-1"], "--num-samples"),
        (["--device", "tpu"], "--device"),
        (["--lr", "inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "-0.1"], "--lr"),
        (["--beta1", "1.5"], "--beta1"),
        (["--lambda-l1", "-1"], "--lambda-l1"),
        (["--epochs", "0", "--epochs-decay", "0"], "--epochs N --epochs-decay M"),
        (["--unet-depth", "20"], "unet_depth = 20"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_option_values_are_refused_before_anything_is_written(
    data: Path, tmp_path: Path, capsys, flags: list[str], named: str
) -> None:
    code, out, err = run_cli(capsys, *TRAIN, "--data", data, "--run-dir", tmp_path / "run", *flags)
    assert code == 2 and "Traceback" not in err
    assert named in err and flags[-1] in err, err  # the option and the value
    assert "model:" not in out
    assert not (tmp_path / "run").exists()


def test_a_bad_preset_value_names_the_file(tmp_path: Path, capsys) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text("checkpoint_every = 0\n")
    code, _, err = run_cli(capsys, "train", "--preset", preset, "--data", tmp_path)
    assert code == 2 and str(preset) in err and "checkpoint_every = 0" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"generator": {"in_channels": 3, "out_channels": 3, "base_channels": 100000, "depth": 8}}, "weights"),
        ({"dataset_mode": "weird"}, "dataset_mode = 'weird'"),
        ({"architecture": "transformer"}, "architecture 'transformer'"),
        ({"generator": {"in_channels": 3, "out_channels": 3, "base_channels": -4, "depth": 5}}, "base_channels"),
        ({"generator": {"in_channels": 3, "out_channels": 3, "base_channels": 4, "depth": 5, "norm": "x"}}, "norm"),
        ({"generator": {"in_channels": 3, "out_channels": 3, "base_channels": 4, "depth": 5, "width": 2}}, "width"),
    ],
)
def test_model_configs_are_validated_on_load(tmp_path: Path, change: dict, message: str) -> None:
    folder = tiny_model(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text()) | change
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json") as err:
        load_model(folder)
    assert message in str(err.value)


# --- training that goes wrong ------------------------------------------------------------------


def test_nonfinite_losses_stop_the_run_and_keep_the_last_good_checkpoint(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # an absurd learning rate: the losses overflow within a few steps
    cfg = tiny_config(data, lr=1e12, max_steps=40, checkpoint_every=2, epochs=20)
    with pytest.raises(TrainingDiverged, match="a loss or weight became NaN or infinite at step") as err:
        train(cfg, run, progress=False)
    bad_step = int(str(err.value).split("at step ")[1].split()[0])
    assert "--no-stop-on-nonfinite" in str(err.value)
    if bad_step > 2:
        state = load_state(run / STATE_FILE)
        assert state["step"] < bad_step
        assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())
    for line in (run / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert all(np.isfinite(v) for v in record.values())
    # asked to go on regardless, it does
    summary = train(tiny_config(data, lr=1e12, max_steps=6, stop_on_nonfinite=False), tmp_path / "on", progress=False)
    assert summary["step"] == 6


def _largest_entry_offset(path: Path) -> tuple[int, int]:
    """(offset, size) of the data of the largest member of a torch.save zip (a tensor's bytes)."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_a_checkpoint_with_flipped_bytes_is_refused(data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    train(tiny_config(data, max_steps=2), run, progress=False)
    path = run / STATE_FILE
    offset, size = _largest_entry_offset(path)
    raw = bytearray(path.read_bytes())
    for i in (offset + size // 3, offset + size // 2):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        train(config_for_resume(run, {"max_steps": 4}), run, resume=True, progress=False)
    code, _, err = run_cli(capsys, "train", "--resume", run, "--max-steps", "4", "--no-progress")
    assert code == 2 and "do not match the checksum" in err


class _Payload:
    def __reduce__(self):
        return (print, ("this would have run",))


def test_a_pickled_checkpoint_is_refused_without_suggesting_to_unpickle_it(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    torch.save({"format": 1, "config": {}, "payload": _Payload()}, path)
    with pytest.raises(CheckpointError) as err:
        load_state(path)
    assert "pickled Python objects" in str(err.value)
    assert "weights_only=False" not in str(err.value) and "weights_only" not in str(err.value)


def test_a_cut_last_log_line_is_dropped_on_resume(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(data, max_steps=2), run, progress=False)
    with open(run / "log.jsonl", "a") as f:
        f.write('{"step": 3, "epoch": 0, "g_l')  # a full disk or a crash mid-line
    summary = train(config_for_resume(run, {"max_steps": 4}), run, resume=True, progress=False)
    assert summary["step"] == 4
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


@contextlib.contextmanager
def held_by_another_process(run: Path) -> Iterator[subprocess.Popen]:
    """A second Python process holding `run`'s lock (as a trainer does) until killed."""
    code = (
        "import sys, time; from pix2pix.training.run import exclusive\n"
        "with exclusive(sys.argv[1]):\n print('held', flush=True); time.sleep(600)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_run_folder_in_training_is_refused_to_a_second_trainer(data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    train(tiny_config(data, max_steps=2), run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}
    with held_by_another_process(run) as holder:
        code, _, err = run_cli(capsys, "train", "--resume", run, "--max-steps", "3", "--no-progress")
        assert code == 2 and f"{run} is being trained by another process (pid {holder.pid})" in err
        code, _, err = run_cli(capsys, *TRAIN, "--data", data, "--run-dir", run, "--overwrite", "--max-steps", "1")
        assert code == 2 and "being trained by another process" in err
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"} == before
    # the lock dies with its process (here kill -9): no stale lock file blocks the resume
    summary = train(config_for_resume(run, {"max_steps": 3}), run, resume=True, progress=False)
    assert summary["step"] == 3


def test_a_refused_new_run_leaves_no_folder_behind(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "new"
    code, _, err = run_cli(capsys, *TRAIN, "--data", tmp_path / "missing", "--run-dir", run, "--max-steps", "1")
    assert code == 2 and "missing" in err
    assert not run.exists()


def test_resume_from_another_working_directory(data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(data.parent)
    code, _, _ = run_cli(capsys, *TRAIN, "--data", data.name, "--run-dir", tmp_path / "run", "--max-steps", "1")
    assert code == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == str(data)
    monkeypatch.chdir(tmp_path / "run")
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "run", "--max-steps", "2", "--no-progress")
    assert code == 0, err
    # the data moved: the message names the missing path and the way out
    data.rename(tmp_path / "moved")
    code, _, err = run_cli(capsys, "train", "--resume", tmp_path / "run", "--max-steps", "3", "--no-progress")
    assert code == 2 and str(data) in err and "--data" in err
    code, _, _ = run_cli(
        capsys, "train", "--resume", tmp_path / "run", "--max-steps", "3", "--no-progress", "--data", tmp_path / "moved"
    )
    assert code == 0


def test_model_folder_catches_up_with_the_checkpoint_on_resume(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(data, max_steps=2), run, progress=False)
    shutil.copytree(run / "model", tmp_path / "model_at_2")
    train(config_for_resume(run, {"max_steps": 4}), run, resume=True, progress=False)
    shutil.rmtree(run / "model")
    shutil.copytree(tmp_path / "model_at_2", run / "model")  # as if the model write had failed
    train(config_for_resume(run, {"max_steps": 4}), run, resume=True, progress=False)
    assert json.loads((run / "model" / "config.json").read_text())["step"] == 4
    generator, _ = load_model(run / "model")
    state = load_state(run / STATE_FILE)
    assert all(torch.equal(v, state["generator"][k]) for k, v in generator.state_dict().items())


# --- full disks --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs mounted for the test (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` up with a filler file; returns it (delete it to free the space)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:  # unbuffered: nothing left to flush at close
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass
    return filler


def test_a_full_disk_during_training_keeps_the_previous_checkpoint(data: Path, small_disk: Path, capsys) -> None:
    run = small_disk / "run"
    train(tiny_config(data, max_steps=2, log_every=1), run, progress=False)
    good = (run / STATE_FILE).read_bytes()
    filler = fill(small_disk)
    with pytest.raises(DiskFullError, match="no space left on the device holding") as err:
        train(config_for_resume(run, {"max_steps": 4}), run, resume=True, progress=False)
    assert "the previous checkpoint is intact" in str(err.value) and f"--resume {run}" in str(err.value)
    code, _, message = run_cli(capsys, "train", "--resume", run, "--max-steps", "4", "--no-progress")
    assert code != 0 and "no space left" in message and "Traceback" not in message
    assert (run / STATE_FILE).read_bytes() == good
    assert not list(run.glob("*.tmp")) and not list((run / "model").glob("*.tmp"))
    filler.unlink()
    summary = train(config_for_resume(run, {"max_steps": 4}), run, resume=True, progress=False)
    assert summary["step"] == 4
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_study_answers_survive_a_full_disk_and_a_restart(small_disk: Path) -> None:
    from ..study.test_study import Client, Running, make_study

    study = make_study(small_disk)
    server = Running(study)
    client = Client(server.port)
    session = client.start()[1]["session"]["session"]
    acknowledged = []
    assert client.answer(session, 0)[0] == 200
    acknowledged.append(0)
    # leave less room in the file's last page than one record needs (blank lines are ignored),
    # then fill the disk: the next append writes part of its line, then finds no space
    responses = study / "responses.jsonl"
    slack = -responses.stat().st_size % 4096
    with open(responses, "ab") as f:
        f.write(b"\n" * max(0, slack - 100))
    filler = fill(small_disk)
    status, body = client.answer(session, 1)
    assert status == 507 and "no space left" in body["error"] and "nothing was saved" in body["error"]
    status, body = client.start()  # another participant's new session: refused, not half-written
    assert status in (200, 507)
    filler.unlink()
    for trial in (1, 2):
        assert client.answer(session, trial)[0] == 200
        acknowledged.append(trial)
    server.close()
    lines = [line for line in (study / "responses.jsonl").read_text().splitlines() if line]
    records = [json.loads(line) for line in lines]  # no fragment for a later record to be glued onto
    server = Running(study, port=server.port)
    try:
        assert not server.server.store.warnings
        assert client.state()["index"] == 3
    finally:
        server.close()
    assert [r["trial"] for r in records] == acknowledged


def test_study_server_refuses_deeply_nested_json(tmp_path: Path) -> None:
    from ..study.test_study import Client, Running, make_study

    server = Running(make_study(tmp_path))
    try:
        client = Client(server.port)
        body = b"[" * 8000 + b"]" * 8000  # within the 16 KiB body limit, deeper than the parser goes
        status, _, data = client.request("POST", "/api/session", body, {"Content-Type": "application/json"}, raw=True)
        assert status == 400 and "nested too deeply" in data["error"]
        assert client.start()[0] in (200, 201)  # and the server goes on
    finally:
        server.close()


def test_evaluate_replaces_an_earlier_evaluation_whole_or_refuses(data: Path, tmp_path: Path, capsys) -> None:
    model = tiny_model(tmp_path / "m")
    out = tmp_path / "eval"
    args = ["evaluate", "--model", model, "--data", data, "--out", out, "--device", "cpu", "--task", "image"]
    assert run_cli(capsys, *args)[0] == 0
    stale = out / "images" / "stale_from_an_older_run.png"
    stale.write_bytes(b"old")
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "already holds an evaluation" in err and "--overwrite" in err
    assert stale.exists()  # refused: nothing touched
    assert run_cli(capsys, *args, "--overwrite")[0] == 0
    assert not stale.exists() and (out / "metrics.json").is_file()
    assert not list(tmp_path.glob(".eval.*"))


# --- the demo server under load ----------------------------------------------------------------


def _serving(tmp_path: Path, **limits):
    from pix2pix.serve import Limits

    from ..serve.test_demo import Running, save_tiny_model

    return Running(save_tiny_model(tmp_path / "model"), limits=Limits(**limits))


def test_serve_answers_503_with_retry_after_when_its_queue_is_full(tmp_path: Path) -> None:
    from ..serve.test_demo import png_bytes, random_image

    server = _serving(tmp_path, max_queue=1)
    try:
        with server.server.translator.queue.turn(1):  # the one place is taken
            status, headers, body = server.translate(png_bytes(random_image(64, 64, 0)))
        assert status == 503 and int(headers["Retry-After"]) >= 1 and b"busy" in body
        assert server.translate(png_bytes(random_image(64, 64, 0)))[0] == 200  # free again
    finally:
        server.close()


def test_serve_gives_each_request_a_deadline_in_the_queue(tmp_path: Path) -> None:
    import time

    from ..serve.test_demo import png_bytes, random_image

    server = _serving(tmp_path, queue_seconds=0.5)
    try:
        with server.server.translator.queue.turn(1):
            start = time.monotonic()
            status, headers, body = server.translate(png_bytes(random_image(64, 64, 0)))
            waited = time.monotonic() - start
        assert status == 503 and "Retry-After" in headers and b"waited" in body
        assert 0.4 < waited < 5
    finally:
        server.close()


def test_a_small_request_does_not_wait_behind_queued_large_ones(tmp_path: Path) -> None:
    import threading
    import time

    from ..serve.test_demo import png_bytes, random_image

    server = _serving(tmp_path)
    queue = server.server.translator.queue
    finished: dict[str, float] = {}

    def post(name: str, size: int) -> None:
        status, _, _ = server.translate(png_bytes(random_image(size, size, 1)))
        assert status == 200
        finished[name] = time.monotonic()

    def wait_for(waiting: int) -> None:
        deadline = time.monotonic() + 10
        while len(queue._waiting) < waiting and time.monotonic() < deadline:
            time.sleep(0.01)

    try:
        threads = [threading.Thread(target=post, args=(f"large{i}", 512)) for i in range(3)]
        with queue.turn(1):  # something is running: the others queue up
            for i, t in enumerate(threads):
                t.start()
                wait_for(i + 1)
            small = threading.Thread(target=post, args=("small", 32))
            small.start()
            wait_for(4)
        for t in [*threads, small]:
            t.join(60)
        assert min(finished, key=finished.get) == "small"  # served first, though it came last
    finally:
        server.close()


def test_a_client_trickling_its_request_is_cut_off(tmp_path: Path) -> None:
    import socket
    import time

    server = _serving(tmp_path, read_seconds=1.0)
    try:
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        conn.sendall(b"POST /translate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n")
        conn.sendall(b"Content-Length: 1000\r\n\r\n")
        start, closed = time.monotonic(), False
        while time.monotonic() - start < 8:  # a byte every 0.2 s: each read is quick, the whole is not
            try:
                conn.sendall(b"x")
                conn.settimeout(0.2)
                if conn.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed and time.monotonic() - start < 4
        conn.close()
    finally:
        server.close()
