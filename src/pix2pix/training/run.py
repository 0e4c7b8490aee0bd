"""A run folder and the process around a run: what train.py writes and what it borrows.

A run folder holds config.json (the flat configuration), log.jsonl (one line per logged step),
samples/step_*.png (fixed validation images: input | output | target), checkpoint.pt (the
resumable state, written atomically with a checksum) and model/ (release weights). Rank 0 of
several processes alone writes it, holding .lock (`exclusive`) so that no second process trains
in the same folder.

`process_settings` owns the process-wide state a run changes (deterministic algorithms, thread
count, cuDNN autotuning, cuBLAS workspace) and restores all of it afterwards; `seed_dropout` sets
the run's random stream for this process; `StopSignals` turns Ctrl-C and SIGTERM into a request
to stop after a whole step.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..config import TrainConfig
from ..hub.folder import save_model
from ..hub.model_config import CheckpointError, ModelConfig
from ..version import __version__
from . import distributed
from .checkpoint import FORMAT_VERSION, STATE_FILE, rng_state, save_state, set_rng_state

RUN_FILES = ("config.json", "log.jsonl", STATE_FILE, "model", "samples")
# what monitor.py and report.py add: cleared with the rest when a run starts over (--overwrite)
WATCH_FILES = (
    "snapshots",
    "model-best",
    ".model-best.pending",
    ".model-best.old",
    "tensorboard",
    "report.html",
    "wandb",
    "wandb_id",
)


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (would overwrite, or nothing to resume)."""


class RunBusyError(RunDirError):
    """Another process is training in the same run directory."""


LOCK_FILE = ".lock"


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold RUN/.lock while this process trains in `path`. The lock is an advisory flock, which the
    kernel drops when the process ends, even by kill -9, so a stale file never blocks a resume;
    a second trainer of the same folder is refused instead of both writing its checkpoint.
    Re-entrant within a process (reproduce holds it across training and marking the row done)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    path = Path(path)
    key = path.resolve()
    if key in _HELD:
        yield
        return
    created, lock_created = not path.exists(), not (path / LOCK_FILE).exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(path / LOCK_FILE, fcntl):
            _HELD.add(key)
            try:
                yield
            finally:
                _HELD.discard(key)
    finally:
        # A run refused before it started (no config.json: every check runs before that is written)
        # leaves no folder behind, or a folder that was there as it was. What it made there (the
        # generated builtin:shapes data) was made by this process for this run alone.
        if not (path / "config.json").exists():
            if created:
                shutil.rmtree(path, ignore_errors=True)
            elif lock_created:
                (path / LOCK_FILE).unlink(missing_ok=True)


_HELD: set[Path] = set()  # run folders whose lock this process holds


def trainer_of(path: str | Path) -> str | None:
    """Who trains in run folder `path` now, "another process (pid N)", while another process
    holds its lock; else None."""
    lock = Path(path) / LOCK_FILE
    try:
        import fcntl
    except ImportError:
        return None
    if not lock.is_file():
        return None
    try:
        with open(lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when the file closes
            except BlockingIOError:
                return _holder(handle)
    except OSError:
        return None
    return None


def _holder(handle: Any) -> str:
    """The process named in a held lock file: the pid its holder wrote after locking it."""
    holder = handle.read().strip()
    return f"another process (pid {holder})" if holder.isdigit() else "another process"


@contextlib.contextmanager
def _locked(lock: Path, fcntl: Any) -> Iterator[None]:
    path = lock.parent
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise RunBusyError(
                f"{path} is being trained by {_holder(handle)}; "
                "wait for it to finish, or stop it (Ctrl-C or SIGTERM saves a checkpoint) and resume"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield  # closing the file releases the lock


class DiskFullError(OSError):
    """A write that found its device full; the message says what is intact and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


class RunDir:
    """The files of one run. Writes only where `main` (rank 0); the others read or do nothing."""

    def __init__(self, path: str | Path, main: bool = True) -> None:
        self.path, self.main = Path(path), main
        self._log = None

    # --- starting ------------------------------------------------------------------------------

    def check_new(self, overwrite: bool) -> None:
        """Refuse to start a new run over an existing one unless `overwrite`."""
        existing = [name for name in RUN_FILES if (self.path / name).exists()]
        if existing and not overwrite:
            raise RunDirError(
                f"{self.path} already holds a run ({', '.join(existing)}); continue it with "
                f"--resume {self.path}, start over with --overwrite, or choose another --run-dir"
            )

    def start(self, cfg: TrainConfig, overwrite: bool) -> None:
        """A new run: clear the old run's files (checked by `check_new`), write config.json."""
        self.check_new(overwrite)
        for name in RUN_FILES + WATCH_FILES:
            path = self.path / name
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")

    def continue_at(self, step: int, generator: nn.Module, cfg: TrainConfig) -> None:
        """A resumed run: drop what a killed run left after its checkpoint (temporary files, log
        lines of steps that will run again, a cut-short line) and bring model/ to the step."""
        for stale in self.path.glob(f"{STATE_FILE}.*.tmp"):
            stale.unlink()
        self._truncate_log(step)
        try:
            saved_step = ModelConfig.read(self.path / "model" / "config.json").step
        except (OSError, CheckpointError):
            saved_step = None
        if saved_step != step:  # a write cut short (full disk, kill between the two files)
            with self.disk_full_reported(step):
                save_model(self.path / "model", generator, ModelConfig.from_train_config(cfg, step))

    def _truncate_log(self, step: int) -> None:
        path = self.path / "log.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a full disk or a crash: the step is logged again
            if isinstance(record, dict) and record.get("step", step + 1) <= step:
                kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    # --- during the run ------------------------------------------------------------------------

    def __enter__(self) -> RunDir:
        if self.main:
            self._log = open(self.path / "log.jsonl", "a")  # noqa: SIM115 - closed in __exit__
        return self

    def __exit__(self, *exc: object) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):  # a full disk: the message comes from the first error
                self._log.close()
            self._log = None

    def log(self, record: dict[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def save_sample(self, step: int, grid: Image.Image) -> None:
        (self.path / "samples").mkdir(exist_ok=True)
        grid.save(self.path / "samples" / f"step_{step:07d}.png")

    def save_checkpoint(self, state: dict[str, Any], generator: nn.Module, cfg: TrainConfig) -> None:
        """checkpoint.pt, then model/ (each atomic; model/config.json records the step)."""
        with self.disk_full_reported(state["step"]):
            save_state(self.path / STATE_FILE, state)
        with self.disk_full_reported(state["step"], checkpoint_written=True):
            save_model(self.path / "model", generator, ModelConfig.from_train_config(cfg, state["step"]))

    @contextlib.contextmanager
    def disk_full_reported(self, step: int | None = None, checkpoint_written: bool = False) -> Iterator[None]:
        """Turn a write that found the disk full into one message: checkpoints and model files
        are written atomically, so those of the previous checkpoint are intact. `step`: the
        checkpoint being written, if that is what failed; `checkpoint_written`: its checkpoint.pt was
        written, and model/ (still of the step it says) failed."""
        try:
            yield
        except DiskFullError:
            raise
        except OSError as err:
            if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            where = Path(err.filename) if err.filename else self.path
            free = shutil.disk_usage(self.path).free
            if checkpoint_written:
                held = self._model_step()
                doing = (
                    f" while writing model/ of step {step}; {STATE_FILE} holds step {step} and model/ "
                    + (f"still holds step {held}" if held is not None else "holds no complete model")
                    + " (--resume writes it again)"
                )
            else:
                doing = f" while writing the checkpoint of step {step}" if step is not None else ""
                doing += "; the previous checkpoint is intact"
            raise DiskFullError(
                err.errno,
                f"no space left on the device holding {where} ({free:,} bytes free){doing}. "
                f"Free some space and continue with: pix2pix train --resume {self.path}",
            ) from None

    def _model_step(self) -> int | None:
        """The step model/ holds, or None where it holds no complete model."""
        try:
            return ModelConfig.read(self.path / "model" / "config.json").step
        except (OSError, CheckpointError):
            return None


def training_state(
    cfg: TrainConfig, progress: Any, world: distributed.World, nets: Any, rngs: list[dict[str, Any]]
) -> dict[str, Any]:
    """What checkpoint.pt holds: everything a resumed run needs to continue exactly."""
    generator, discriminator = nets.generator, nets.discriminator
    lr = nets.opt_g.param_groups[0]["lr"]
    # the learning rate of the epoch, in the layout of torch's LambdaLR state (checkpoint format 1)
    schedule = {"last_epoch": progress.epoch, "base_lrs": [cfg.optim.lr], "_last_lr": [lr]}
    return {
        "format": FORMAT_VERSION,
        "version": __version__,
        "config": cfg.to_dict(),
        "step": progress.step,
        "epoch": progress.epoch,
        "image_in_epoch": progress.image_in_epoch,
        "world_size": world.size,
        "generator": generator.state_dict(),
        "discriminator": None if discriminator is None else discriminator.state_dict(),
        "opt_g": nets.opt_g.state_dict(),
        "opt_d": None if nets.opt_d is None else nets.opt_d.state_dict(),
        "sched_g": schedule,
        "sched_d": None if discriminator is None else schedule,
        "rng": rngs[0],
        "rng_per_rank": rngs,
    }


# --- the process around a run ------------------------------------------------------------------


@contextlib.contextmanager
def process_settings(cfg: TrainConfig, device: torch.device) -> Iterator[None]:
    """The process-wide settings a run needs, restored when it ends."""
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.get_num_threads(),
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    deterministic = cfg.optim.deterministic
    torch.use_deterministic_algorithms(deterministic)
    if deterministic and device.type == "cpu":
        # multi-threaded CPU kernels are not bitwise reproducible across processes on a busy
        # machine (benchmarks/RESULTS.md), so exact runs use one intra-op thread
        torch.set_num_threads(1)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        if deterministic:  # deterministic cuBLAS needs a fixed workspace (CUDA docs)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.set_num_threads(before[1])
        torch.backends.cudnn.benchmark = before[2]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before[3]


def seed_dropout(state: dict[str, Any] | None, seed: int, world: distributed.World, step: int) -> None:
    """This process's random stream for dropout, after the weights were drawn from `seed`.
    Rank 0 continues the run's stream (so it draws what a single process draws); the other ranks
    get their own seeded streams; a checkpoint holds every rank's stream."""
    if state is not None:
        rngs = state.get("rng_per_rank", [state["rng"]])
        if world.rank < len(rngs):
            set_rng_state(rngs[world.rank])
            return
    if state is not None or not world.main:  # a new rank > 0, or one more than the run had
        torch.manual_seed(distributed.rank_seed(seed, world.rank, step))


def gather_rng(world: distributed.World) -> list[dict[str, Any]]:
    """Every process's random stream, for the checkpoint (a collective: all ranks call it)."""
    return distributed.gather(rng_state(), world)


class StopSignals:
    """The first SIGINT / SIGTERM becomes a request to stop after the current step (a checkpoint
    is then written, so resuming loses nothing); a second one interrupts at once. Every process
    must leave the loop after the same step, or the others would wait in the next gradient sync
    forever: `requested` is agreed over the processes."""

    def __init__(self) -> None:
        self._signals: list[int] = []
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handler(self, signum: int, frame: Any) -> None:
        if self._signals:
            raise KeyboardInterrupt
        self._signals.append(signum)

    def requested(self, device: torch.device) -> bool:
        return distributed.any_rank(bool(self._signals), device)
