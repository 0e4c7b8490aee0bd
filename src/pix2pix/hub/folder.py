"""Release weights: a model folder in the Hugging Face Hub layout, `config.json` (the ModelConfig,
model_config.py) + `model.safetensors` + a `README.md` model card (card.py), each written
atomically. Loading needs no flags: the config says how to build the generator. Folders written
before the Hub layout hold `generator.safetensors` instead: they still load, and are never
written again. Also the atomic file writes that the training state and the ONNX export share."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..models.networks import GENERATOR_CLASSES
from .card import model_card
from .model_config import LEGACY_WEIGHTS, MODEL_CONFIG, MODEL_README, MODEL_WEIGHTS, CheckpointError, ModelConfig


def fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the usual permissions (mkstemp creates files private)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half


def first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


# --- release weights ---------------------------------------------------------------------------


def build_generator(config: ModelConfig | dict[str, Any]) -> torch.nn.Module:
    """Generator from a model's config (or a config.json mapping, validated first)."""
    card = config if isinstance(config, ModelConfig) else ModelConfig.from_json(config)
    return GENERATOR_CLASSES[card.architecture](**dict(card.generator))


def save_model(
    folder: Path, generator: torch.nn.Module, config: ModelConfig | dict[str, Any], readme: bool = True
) -> None:
    """Write config.json (the model's config) + model.safetensors, each atomically, and the
    README.md model card (card.model_card) unless `readme` is False. A legacy generator.safetensors beside
    them is removed: a folder holds one set of weights."""
    config = config if isinstance(config, ModelConfig) else ModelConfig.from_json(config)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tmp = folder / (MODEL_WEIGHTS + ".tmp")
    # one metadata key: safetensors writes a metadata map in no fixed order, and identical
    # weights should give identical files (the version is in config.json)
    try:
        save_file(weights, str(tmp), metadata={"format": "pix2pix"})
    except Exception as err:  # noqa: BLE001 - safetensors reports OS errors as its own type
        tmp.unlink(missing_ok=True)
        # the Rust writer reports a full disk as "... No space left on device (os error 28)"
        code = errno.ENOSPC if "os error 28" in str(err) else errno.EIO
        raise OSError(code, f"{os.strerror(code)} ({first_line(err)})", str(tmp)) from None
    fsync_replace(tmp, folder / MODEL_WEIGHTS)
    (folder / LEGACY_WEIGHTS).unlink(missing_ok=True)
    write_text(folder / MODEL_CONFIG, json.dumps(config.to_json(), indent=2) + "\n")
    if readme:
        write_text(folder / MODEL_README, model_card(config))


def write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    fsync_replace(tmp, path)


def weights_path(folder: Path) -> Path:
    """The weights file of a model folder: model.safetensors, else a legacy generator.safetensors
    (the canonical path when neither exists, for the error message)."""
    legacy = folder / LEGACY_WEIGHTS
    return legacy if not (folder / MODEL_WEIGHTS).is_file() and legacy.is_file() else folder / MODEL_WEIGHTS


def load_model(folder: Path) -> tuple[torch.nn.Module, ModelConfig]:
    """(generator in eval mode, its card) from a model folder; also accepts a run directory
    (its model/ subfolder)."""
    folder = Path(folder)
    if not weights_path(folder).is_file() and weights_path(folder / "model").is_file():
        folder = folder / "model"  # a run directory
    config_path, weights_file = folder / MODEL_CONFIG, weights_path(folder)
    for path in (config_path, weights_file):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; a model folder holds {MODEL_CONFIG} and {MODEL_WEIGHTS}")
    config = ModelConfig.read(config_path)
    generator = build_generator(config)
    try:
        weights = load_file(str(weights_file))
    except Exception as err:  # noqa: BLE001 - safetensors raises several error types
        raise CheckpointError(f"{weights_file}: not a readable safetensors file ({err})") from None
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{weights_file}: weights do not match {config_path}: {err}") from None
    return generator.eval(), config
