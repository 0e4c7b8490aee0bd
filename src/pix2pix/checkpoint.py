"""Resumable training state and release weights.

- The training state is one self-describing dict (G, D, both optimisers and schedulers, epoch,
  step, RNG states, config, package version), written atomically: a kill during the write leaves
  the previous file intact. It holds only tensors and plain containers, so it loads with
  `torch.load(..., weights_only=True)`, which never unpickles code.
- Release weights are a model folder: `config.json` + `generator.safetensors`. Loading needs no
  flags: the config says how to build the generator.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .networks import ResnetGenerator, UNetGenerator

STATE_FILE = "checkpoint.pt"
MODEL_CONFIG = "config.json"
MODEL_WEIGHTS = "generator.safetensors"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint or model folder that cannot be loaded, with the path in the message."""


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the usual permissions (mkstemp creates files private)
    os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new, never half


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        _fsync_replace(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict[str, Any]:
    """Load a training state safely (weights_only: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    try:
        # mmap: reading only the config of a 700 MB checkpoint does not read the tensors
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"{path}: not a readable pix2pix checkpoint ({err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a pix2pix training checkpoint (format {FORMAT_VERSION})")
    return state


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- release weights ---------------------------------------------------------------------------


def model_config(train_config: dict[str, Any]) -> dict[str, Any]:
    """What a model folder needs to rebuild and use the generator, taken from a run's config."""
    from .config import TrainConfig

    cfg = TrainConfig.from_dict(train_config)
    generator: dict[str, Any] = {
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "base_channels": cfg.g_channels,
        "norm": cfg.norm,
        "dropout": cfg.dropout,
    }
    if cfg.generator == "unet":
        generator.update(depth=cfg.depth, skips=cfg.skips, innermost_norm=cfg.innermost_norm)
    else:
        generator.update(blocks=cfg.resnet_blocks)
    return {
        "pix2pix_version": __version__,
        "architecture": cfg.generator,
        "generator": generator,
        "direction": cfg.direction,
        "dataset_mode": cfg.dataset_mode,
        "crop_size": cfg.crop_size,
        "objective": cfg.objective,
    }


def build_generator(config: dict[str, Any]) -> torch.nn.Module:
    """Generator from a model config's 'architecture' and 'generator' entries."""
    kwargs = dict(config["generator"])
    if config["architecture"] == "unet":
        return UNetGenerator(**kwargs)
    if config["architecture"] == "resnet":
        return ResnetGenerator(**kwargs)
    raise CheckpointError(f"unknown architecture {config['architecture']!r}")


def save_model(folder: Path, generator: torch.nn.Module, config: dict[str, Any]) -> None:
    """Write config.json + generator.safetensors, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tmp = folder / (MODEL_WEIGHTS + ".tmp")
    # one metadata key: safetensors writes a metadata map in no fixed order, and identical
    # weights should give identical files (the version is in config.json)
    save_file(weights, str(tmp), metadata={"format": "pix2pix"})
    _fsync_replace(tmp, folder / MODEL_WEIGHTS)
    tmp = folder / (MODEL_CONFIG + ".tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    _fsync_replace(tmp, folder / MODEL_CONFIG)


def load_model(folder: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(generator in eval mode, config) from a model folder; also accepts a run directory
    (its model/ subfolder)."""
    folder = Path(folder)
    if not (folder / MODEL_WEIGHTS).is_file() and (folder / "model" / MODEL_WEIGHTS).is_file():
        folder = folder / "model"
    config_path, weights_path = folder / MODEL_CONFIG, folder / MODEL_WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; a model folder holds {MODEL_CONFIG} and {MODEL_WEIGHTS}")
    try:
        config = json.loads(config_path.read_text())
        generator = build_generator(config)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{config_path}: not a valid model config ({err!r})") from None
    try:
        weights = load_file(str(weights_path))
    except Exception as err:  # noqa: BLE001 - safetensors raises several error types
        raise CheckpointError(f"{weights_path}: not a readable safetensors file ({err})") from None
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{weights_path}: weights do not match {config_path}: {err}") from None
    return generator.eval(), config
