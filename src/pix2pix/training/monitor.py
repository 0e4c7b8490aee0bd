"""What a run writes for watching it, besides log.jsonl and checkpoints: validation metrics
(validation.py), snapshots, the best model, and TensorBoard event files.

- `snapshots/step_NNNNNNN/`: model folders (the format of model/) every `--snapshot-every`
  steps, the oldest removed beyond `--keep-snapshots`.
- `model-best/`: the weights at the best value of `--best-metric`, with `best.json` (metric,
  value, step) inside. A better validation is written to `.model-best.pending/` at once and
  becomes `model-best/` at the next checkpoint (a rename), so model-best/ always belongs to the
  history the checkpoint continues.
- `tensorboard/`: losses, learning rate, images/s, every validation metric and the sample grids,
  written with torch.utils.tensorboard (the `tensorboard` extra).
- `--wandb PROJECT`: the same to Weights & Biases (files under `wandb/`; the run's id is kept in
  `wandb_id`, so a resumed run continues the same W&B run). W&B drops points at steps below the
  last one it has: after a kill -9 the replayed steps are not logged twice, and the points the
  killed process logged for them stay (the same values with --deterministic, nearly otherwise).

Resume: a kill -9 loses the steps after the last checkpoint, which then run again (bit for bit
with --deterministic, else nearly). What was written after that checkpoint is dropped and made
again by the replayed steps: log lines (run.py), snapshots, a pending best model, and
TensorBoard's events (`purge_step`); so no point is duplicated or missing, and model-best/ never
holds weights of steps the log no longer has.
"""

from __future__ import annotations

import difflib
import json
import math
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import nn

from ..config import TrainConfig
from ..extras import require
from ..hub.folder import save_model
from ..hub.model_config import ModelConfig
from .validation import Validator, higher_is_better, metric_names, resolve_task

BEST = "model-best"
PENDING = ".model-best.pending"  # a better validation since the last checkpoint
NOT_SCALARS = ("step", "epoch")


class Monitor:
    """Validation, snapshots, the best model and TensorBoard of one run (rank 0's)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, validator: Validator | None, resume_step: int | None) -> None:
        """`validator`: `Validator.make`'s, made (and so checked) before the run folder was written."""
        self.cfg, self.path = cfg, Path(run_dir)
        self.validator = validator
        self.board = _board(self.path, resume_step) if cfg.run.tensorboard else None
        self.wandb = _wandb_run(cfg, self.path) if cfg.run.wandb else None
        if resume_step is not None:
            self._drop_snapshots_after(resume_step)
            shutil.rmtree(self.path / PENDING, ignore_errors=True)  # a best of the steps that run again
        self.best_value, self.best_step = self._read_best()

    def log(self, record: dict[str, Any]) -> None:
        if self.board is None and self.wandb is None:
            return
        scalars = {_tag(k): v for k, v in record.items() if k not in NOT_SCALARS and isinstance(v, int | float)}
        if self.board is not None:
            for tag, value in scalars.items():
                self.board.add_scalar(tag, value, record["step"])
            self.board.flush()
        if self.wandb is not None:
            self.wandb.log({**scalars, "epoch": record["epoch"]}, step=record["step"])

    def sample(self, step: int, grid: Image.Image) -> None:
        if self.board is not None:
            self.board.add_image("samples", np.asarray(grid.convert("RGB")), step, dataformats="HWC")
            self.board.flush()
        if self.wandb is not None:
            import wandb

            self.wandb.log({"samples": wandb.Image(grid.convert("RGB"))}, step=step)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.board is not None:
            self.board.close()
        if self.wandb is not None:
            self.wandb.finish()

    def after_step(self, step: int, epoch: int, total: int, generator: nn.Module) -> dict[str, Any] | None:
        """Validate and snapshot where due (every N steps and at the last); returns the
        validation record, if one was made."""
        run = self.cfg.run
        record = None
        if self.validator is not None and _due(step, run.val_every, total):
            record = self.validate(step, epoch, generator)
        if _due(step, run.snapshot_every, total):
            self.snapshot(step, generator)
        return record

    def validate(self, step: int, epoch: int, generator: nn.Module) -> dict[str, Any]:
        """Score the generator; keep it as model-best/ when it improves the best metric."""
        record = {"step": step, "epoch": epoch, **self.validator(generator)}
        metric = self.cfg.run.best_metric
        if metric and self._improves(record[metric]):
            self.best_value, self.best_step = record[metric], step
            self._save_pending(generator, step, metric, record[metric])
        self.log(record)
        return record

    def snapshot(self, step: int, generator: nn.Module) -> None:
        folder = self.path / "snapshots" / f"step_{step:07d}"
        save_model(folder, generator, ModelConfig.from_train_config(self.cfg, step))
        keep = self.cfg.run.keep_snapshots
        if keep:
            for old in _snapshots(self.path)[:-keep]:
                shutil.rmtree(old)

    # --- the best model ---------------------------------------------------------------------------

    def _improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        higher = higher_is_better(self.cfg.run.best_metric)
        return value > self.best_value if higher else value < self.best_value

    def _save_pending(self, generator: nn.Module, step: int, metric: str, value: float) -> None:
        """The new best, beside model-best/ until the next checkpoint (commit)."""
        pending = self.path / PENDING
        shutil.rmtree(pending, ignore_errors=True)
        save_model(pending, generator, ModelConfig.from_train_config(self.cfg, step))
        better = "higher" if higher_is_better(metric) else "lower"
        best = {"metric": metric, "value": value, "step": step, "better": better}
        (pending / "best.json").write_text(json.dumps(best) + "\n")

    def commit(self) -> None:
        """At a checkpoint: a pending best becomes model-best/ (renames: a kill leaves one of them)."""
        pending, final, old = self.path / PENDING, self.path / BEST, self.path / f".{BEST}.old"
        if not (pending / "best.json").is_file():
            return
        if final.exists():
            final.replace(old)
        pending.replace(final)
        shutil.rmtree(old, ignore_errors=True)

    def _read_best(self) -> tuple[float | None, int | None]:
        """The best so far of a resumed run (None: none yet, or another metric than now)."""
        for folder in (self.path / BEST, self.path / f".{BEST}.old"):  # .old: killed mid-commit
            try:
                best = json.loads((folder / "best.json").read_text())
            except (OSError, ValueError):
                continue
            if folder.name == f".{BEST}.old":
                folder.replace(self.path / BEST)
            if best.get("metric") == self.cfg.run.best_metric:
                return float(best["value"]), int(best["step"])
        return None, None

    def _drop_snapshots_after(self, step: int) -> None:
        for folder in _snapshots(self.path):
            if int(folder.name.removeprefix("step_")) > step:
                shutil.rmtree(folder)


def check_watch_options(cfg: TrainConfig) -> None:
    """Refuse a --best-metric this run's validation never logs, and --tensorboard or --wandb
    without their packages: checked before the run folder is written, so that a refused run
    leaves nothing behind."""
    best = cfg.run.best_metric
    names = metric_names(resolve_task(cfg), cfg.run.perceptual)
    if best and best not in names:
        close = difflib.get_close_matches(best, names, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(f"best_metric = {best!r} (--best-metric): {hint}this run's validation logs {', '.join(names)}")
    if cfg.run.tensorboard:
        require(["tensorboard"], "--tensorboard", 'pip install "pix2pix[tensorboard]"')
    if cfg.run.wandb:
        require(["wandb"], "--wandb", "pip install wandb")


def _due(step: int, every: int, total: int) -> bool:
    return every > 0 and (step % every == 0 or step == total)


def _snapshots(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "snapshots").glob("step_*") if p.is_dir())


def _tag(key: str) -> str:
    """TensorBoard's tag of a log key: grouped as loss/, val/, val_eval/ and train/."""
    if key.startswith("val_eval_"):
        return f"val_eval/{key.removeprefix('val_eval_')}"
    if key.startswith("val_"):
        return f"val/{key.removeprefix('val_')}"
    if key in ("lr", "images_per_s", "time"):
        return f"train/{key}"
    return f"loss/{key}"


def _board(run_dir: Path, resume_step: int | None) -> Any:
    """A SummaryWriter on RUN/tensorboard; on resume, events after the checkpoint are purged."""
    require(["tensorboard"], "--tensorboard", 'pip install "pix2pix[tensorboard]"')
    from torch.utils.tensorboard import SummaryWriter

    purge = None if resume_step is None else resume_step + 1
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=purge)


def _wandb_run(cfg: TrainConfig, run_dir: Path) -> Any:
    """A W&B run in RUN/wandb/, the same W&B run again when this run resumes (RUN/wandb_id)."""
    (wandb,) = require(["wandb"], "--wandb", "pip install wandb")
    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id + "\n")
    return wandb.init(
        project=cfg.run.wandb,
        id=run_id,
        name=run_dir.name,
        dir=str(run_dir),
        config=cfg.to_dict(),
        resume="allow",
    )
