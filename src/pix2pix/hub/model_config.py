"""A model folder's config.json, typed (ModelConfig): how to build the generator and how to use it,
checked before anything is built. The one reader and writer of config.json; the README.md beside
it is card.py's."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import DATASET_MODES, DIRECTIONS, TrainConfig, resumable_keys
from ..models.networks import GENERATOR_CLASSES, generator_settings
from ..models.norms import NORMS
from ..version import __version__

MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "model.safetensors"  # the canonical name (the Hub's)
LEGACY_WEIGHTS = "generator.safetensors"  # model folders written before 0.2 (read, never written)
MODEL_README = "README.md"


class CheckpointError(ValueError):
    """A checkpoint or model folder that cannot be loaded, with the path in the message."""


@dataclass(frozen=True)
class ModelConfig:
    """A model folder's config.json, typed: how to build the generator (`architecture` and the
    generator class's arguments) and how to use it. Keys this class does not know (the importer's
    `source`, a segmenter's `recipe`, the writing version) are kept as they were in `extra`.
    `ModelConfig.read` is the one reader of config.json and `to_json` the one writer."""

    architecture: str
    generator: dict[str, Any]
    direction: str = "AtoB"
    dataset_mode: str = "aligned"
    crop_size: int = 256
    objective: str | None = None
    step: int | None = None  # the training step of the weights beside it (runs' model/ folders)
    palette: str | None = None  # the class palette the demo offers for drawing
    task: str = "translate"  # or "segmenter" (the FCN-score segmenter, evaluation/segmenter.py)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.generator.get("in_channels", 3))

    @property
    def out_channels(self) -> int:
        return int(self.generator.get("out_channels", 3))

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> ModelConfig:
        """From config.json's mapping, checked (CheckpointError names the key and the problem)."""
        validate_model_config(values)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        typed = {k: v for k, v in values.items() if k in known}
        return cls(**typed, extra={k: v for k, v in values.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        values = {"pix2pix_version": __version__, **self.extra}
        values |= {"architecture": self.architecture, "generator": dict(self.generator), "direction": self.direction}
        values |= {"dataset_mode": self.dataset_mode, "crop_size": self.crop_size}
        optional = {"objective": self.objective, "step": self.step, "palette": self.palette}
        values |= {k: v for k, v in optional.items() if v is not None}
        return values | ({"task": self.task} if self.task != "translate" else {})

    @classmethod
    def from_train_config(cls, cfg: TrainConfig, step: int | None = None) -> ModelConfig:
        """The card of a run's model: the one place a model config is made from a training run."""
        architecture, generator = generator_settings(cfg)
        d = cfg.data
        defaults, settings = TrainConfig().to_dict(), cfg.to_dict()
        ignored = set(resumable_keys()) - {"max_steps"}  # paths, devices, speed and logging
        changed = {k: v for k, v in settings.items() if k not in ignored and v != defaults[k]}
        training = {"dataset": Path(cfg.run.data).name or None, "changed_from_defaults": changed}
        card = cls(architecture, generator, d.direction, d.mode, d.crop_size, cfg.loss.objective, step)
        return dataclasses.replace(card, extra={"training": training})

    @classmethod
    def read(cls, path: Path) -> ModelConfig:
        try:
            values = json.loads(Path(path).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path}: not a valid model config ({err})") from None
        try:
            return cls.from_json(values)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from None


# A generator larger than this is refused before any memory is allocated for it: the paper's
# 256 px U-Net has 54M weights, and a typo (base_channels: 100000) would ask for terabytes.
MAX_GENERATOR_WEIGHTS = 2_000_000_000


def _generator_class(config: dict[str, Any]) -> type[torch.nn.Module]:
    classes = GENERATOR_CLASSES
    architecture = config.get("architecture")
    if architecture not in classes:
        raise CheckpointError(f"architecture {architecture!r}: choose one of {', '.join(classes)}")
    if not isinstance(config.get("generator"), dict):
        raise CheckpointError('no "generator" settings (a mapping of the generator\'s arguments)')
    return classes[architecture]


def validate_model_config(config: Any) -> None:
    """Refuse a model config that names unknown settings or values that cannot work, before
    anything is built. Raises CheckpointError (the caller adds the file's path)."""
    if not isinstance(config, dict):
        raise CheckpointError("not a JSON object")
    _generator_class(config)
    g = config["generator"]
    for key in ("in_channels", "out_channels", "base_channels", "depth", "blocks"):
        value = g.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "blocks" else 1):
            raise CheckpointError(f"generator.{key} = {value!r}: must be a whole number >= 1")
    if config["architecture"] == "unet" and g.get("depth", 8) > 16:
        raise CheckpointError(f"generator.depth = {g['depth']}: at most 16 levels (65536 px sides)")
    if g.get("norm", "batch") not in NORMS:
        raise CheckpointError(f"generator.norm = {g['norm']!r}: choose one of {', '.join(NORMS)}")
    dropout = g.get("dropout", 0.5)
    if not isinstance(dropout, int | float) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise CheckpointError(f"generator.dropout = {dropout!r}: must be a number in [0, 1)")
    for key, allowed in (("dataset_mode", DATASET_MODES), ("direction", DIRECTIONS)):
        if key in config and config[key] not in allowed:
            raise CheckpointError(f"{key} = {config[key]!r}: choose one of {', '.join(allowed)}")
    try:
        with torch.device("meta"):  # shapes only: counts the weights without allocating them
            weights = sum(p.numel() for p in _generator_class(config)(**g).parameters())
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"generator settings cannot build a generator ({err})") from None
    if weights > MAX_GENERATOR_WEIGHTS:
        raise CheckpointError(
            f"the generator would have {weights:,} weights ({4 * weights / 2**30:,.0f} GiB), more than the "
            f"{MAX_GENERATOR_WEIGHTS:,} allowed; check generator.base_channels ({g.get('base_channels')})"
        )
