"""Import generators trained with the reference PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix).

Its `latest_net_G.pth` is a plain state dict of the generator chosen by `--netG` and `--norm`;
it holds no configuration, so the architecture and normalisation are given as flags and the
channels (`ngf`, input and output) are read from the weight shapes.

How its modules map onto ours:

- `unet_256` / `unet_128` (UnetGenerator, 8 / 7 levels) nests UnetSkipConnectionBlocks. Block k
  (0 = outermost) owns encoder level k and the decoder level that maps back to that level's
  input; its layers sit under `model.model.` + `1.model.` + `3.model.` * (k - 1). A block returns
  cat([its input, decoder output]) where we concatenate [decoder output, skip], so each
  transposed conv that reads a skip gets the two halves of its input channels swapped. The
  innermost block has no norm after its down conv (our errata default), and dropout follows the
  decoder norm of blocks 4 .. depth-2, i.e. our decoder levels 1 .. depth-5: UNetGenerator's
  `dropout_first_level=1`, recorded in the config so that paper-mode noise matches.
- `resnet_9blocks` / `resnet_6blocks` (ResnetGenerator): the same Sequential indices as ours;
  its residual blocks call their layers `conv_block` where ours say `body`. Whether the blocks
  have dropout shows in those indices.
- norm `batch`: convs before a norm have no bias; BatchNorm2d with running statistics (files
  from before torch 0.4 lack `num_batches_tracked`: it is set to 0, which eval mode never reads).
  `instance`: biases on, InstanceNorm2d(affine=False, track_running_stats=False); files written
  while the reference tracked instance-norm statistics still hold them, and the reference drops
  them when loading, as we do. `none`: no norm layers and, unlike ours, no conv biases either
  (the reference keeps them only with instance norm): read with UNetGenerator's
  `conv_bias=False`, recorded in the config.
- Files saved from DataParallel have `module.` prefixes: they are stripped.

Example:
    >>> config = import_reference("latest_net_G.pth", "models/facades", "unet_256", "batch", "BtoA")  # doctest: +SKIP
    >>> Pix2Pix.load("models/facades").translate(image)                                               # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.networks import dropout_levels
from .folder import build_generator, save_model
from .model_config import MODEL_CONFIG, CheckpointError, ModelConfig

REFERENCE_REPO = "junyanz/pytorch-CycleGAN-and-pix2pix"
# --netG of the reference -> (our architecture, U-Net levels or residual blocks)
REFERENCE_ARCHS = {
    "unet_256": ("unet", 8),
    "unet_128": ("unet", 7),
    "resnet_9blocks": ("resnet", 9),
    "resnet_6blocks": ("resnet", 6),
}
REFERENCE_NORMS = ("batch", "instance", "none")
NORM_STATS = ("running_mean", "running_var", "num_batches_tracked")
REFERENCE_DROPOUT = 0.5  # nn.Dropout(0.5) in both generators


class ReferenceImportError(CheckpointError):
    """A reference checkpoint that cannot be converted, with the file and the reason."""


def load_reference_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a reference `*_net_G.pth`, loaded with weights_only (nothing is unpickled
    but tensors and plain containers), `module.` prefixes of DataParallel removed."""
    path = Path(path)
    if not path.is_file():
        raise ReferenceImportError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise ReferenceImportError(
            f"{path}: not loadable as a state dict with torch.load(weights_only=True) ({err}); the reference "
            "saves generators with torch.save(net.state_dict()), which loads this way"
        ) from None
    if not isinstance(state, dict) or not state:
        raise ReferenceImportError(
            f"{path}: holds a {type(state).__name__}, not a generator state dict (parameter names -> tensors)"
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ReferenceImportError(
            f"{path}: not a generator state dict: entry {bad[0]!r} is not a tensor "
            f"(a training checkpoint? expected the reference's latest_net_G.pth)"
        )
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return dict(state)


def _unet_block(k: int) -> str:
    """Key prefix of the reference's UnetSkipConnectionBlock k (0 = outermost)."""
    return "model.model." if k == 0 else "model.model.1.model." + "3.model." * (k - 1)


def _unet_modules(depth: int) -> dict[str, tuple[str, bool]]:
    """Our U-Net module path -> (reference module path, swap the halves of its input channels)."""
    modules = {
        "encoder.0.0": (_unet_block(0) + "0", False),  # outermost down conv
        "head.1": (_unet_block(0) + "3", True),  # outermost transposed conv, reads [skip, up]
    }
    for k in range(1, depth):
        innermost = k == depth - 1
        block, j = _unet_block(k), depth - 1 - k  # j: our decoder level that maps back to level k-1
        # block layers: LeakyReLU, down conv, [down norm, submodule], ReLU, up conv, up norm, [Dropout]
        modules[f"encoder.{k}.1"] = (block + "1", False)
        if not innermost:
            modules[f"encoder.{k}.2"] = (block + "2", False)
        modules[f"decoder.{j}.1"] = (block + ("3" if innermost else "5"), not innermost)
        modules[f"decoder.{j}.2"] = (block + ("4" if innermost else "6"), False)
    return modules


def _reference_key(key: str, architecture: str, modules: dict[str, tuple[str, bool]]) -> tuple[str, bool]:
    """(reference key, swap halves) for one of our state-dict keys."""
    if architecture == "resnet":
        return key.replace(".body.", ".conv_block."), False
    module, name = key.rsplit(".", 1)
    ref_module, swap = modules[module]
    return f"{ref_module}.{name}", swap and name == "weight"


def guess_arch(keys: set[str]) -> str | None:
    """The reference --netG that these state-dict keys look like, for error messages."""
    if "model.model.0.weight" in keys:
        depth = max(k.split(".").count("model") for k in keys) - 1  # block k nests k + 2 "model"s
        named = {arch for arch, (kind, n) in REFERENCE_ARCHS.items() if kind == "unet" and n == depth}
        return named.pop() if named else f"a U-Net with {depth} levels"
    blocks = {k.split(".")[1] for k in keys if ".conv_block." in k}
    if blocks:
        named = {arch for arch, (kind, n) in REFERENCE_ARCHS.items() if kind == "resnet" and n == len(blocks)}
        return named.pop() if named else f"a ResNet generator with {len(blocks)} blocks"
    return None


def guess_norm(keys: set[str]) -> str | None:
    """batch or instance, from the first conv's bias (the reference drops it only for batch norm)."""
    if "model.model.0.weight" in keys:
        return "instance" if "model.model.0.bias" in keys else "batch"
    if "model.1.weight" in keys:
        return "instance" if "model.1.bias" in keys else "batch"
    return None


def _mismatch(path: Path, arch: str, norm: str, keys: set[str], missing: list[str], unexpected: list[str]) -> str:
    def listing(label: str, items: list[str]) -> str:
        shown = ", ".join(items[:6]) + (f", ... ({len(items) - 6} more)" if len(items) > 6 else "")
        return f"\n  {label} ({len(items)}): {shown}" if items else ""

    arch_guess, norm_guess = guess_arch(keys), guess_norm(keys)
    hint = ""
    if arch_guess and norm_guess and (arch_guess, norm_guess) != (arch, norm):
        hint = f"; the weights look like --arch {arch_guess} --norm {norm_guess}"
    return (
        f"{path}: the weights do not match --arch {arch} --norm {norm}{hint}"
        + listing("missing keys", missing)
        + listing("unexpected keys", unexpected)
    )


def convert_reference(
    state: dict[str, torch.Tensor],
    arch: str,
    norm: str,
    direction: str = "AtoB",
    dropout: bool | None = None,
    source: str | Path = "checkpoint",
) -> tuple[nn.Module, ModelConfig]:
    """(our generator with the reference weights, its model card) from a reference state dict.

    Args:
        arch: the reference's --netG: unet_256, unet_128, resnet_9blocks or resnet_6blocks.
        norm: the reference's --norm: batch (its pix2pix default), instance (CycleGAN's) or none.
        direction: AtoB or BtoA; the reference keeps it outside the checkpoint.
        dropout: whether G was built with dropout (the reference's `--no_dropout` turns it off).
            Weights do not show it for the U-Net: None means on, the reference's pix2pix default.
            For the ResNet generator it shows in the key layout: None reads it from there.
    """
    if arch not in REFERENCE_ARCHS:
        raise ValueError(f"unknown reference architecture {arch!r}; choose one of {list(REFERENCE_ARCHS)}")
    if norm not in REFERENCE_NORMS:
        raise ValueError(f"norm {norm!r}: the reference generators use {' or '.join(REFERENCE_NORMS)}")
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction {direction!r}: choose AtoB or BtoA")
    path = Path(source)
    architecture, size = REFERENCE_ARCHS[arch]
    if norm == "instance":
        # instance-norm layers keep no statistics now; the reference drops old files' ones on load
        state = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in NORM_STATS}
    keys = set(state)

    if architecture == "unet":
        first, last = "model.model.0.weight", "model.model.3.weight"
        with_dropout = True if dropout is None else dropout
    else:
        first, last = "model.1.weight", f"model.{size + 17}.weight"  # c7s1-ngf ... c7s1-C_out
        shows_dropout = "model.10.conv_block.6.weight" in keys  # Dropout shifts the second conv
        if dropout is not None and dropout != shows_dropout and guess_arch(keys) == arch:
            raise ReferenceImportError(
                f"{path}: the residual blocks are {'with' if shows_dropout else 'without'} dropout; "
                f"drop --{'no-' if not dropout else ''}dropout"
            )
        with_dropout = shows_dropout
    # channels from the outer convs: down (ngf, C_in, k, k) and up, Conv (C_out, ngf, ..) or
    # ConvTranspose (2 ngf, C_out, ..) for the U-Net; the defaults only serve the key check
    in_channels, out_channels, base_channels = 3, 3, 64
    if first in keys and last in keys and state[first].ndim == 4 and state[last].ndim == 4:
        base_channels, in_channels = state[first].shape[:2]
        out_channels = state[last].shape[1 if architecture == "unet" else 0]

    generator_config: dict[str, Any] = {
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "base_channels": int(base_channels),
        "norm": norm,
        "dropout": REFERENCE_DROPOUT if with_dropout else 0.0,
    }
    if norm == "none":
        generator_config["conv_bias"] = False  # the reference keeps conv biases only with instance norm
    if architecture == "unet":
        generator_config.update(
            depth=size,
            skips=True,
            innermost_norm=False,
            **dropout_levels(size, "reference"),  # its dropout blocks, one level out from ours
        )
    else:
        generator_config.update(blocks=size)
    config = ModelConfig(
        architecture,
        generator_config,
        direction,
        crop_size=2**size if architecture == "unet" else 256,  # the reference's --crop_size
        extra={"source": {"repository": REFERENCE_REPO, "arch": arch, "norm": norm, "file": path.name}},
    )
    generator = build_generator(config)

    channels = (in_channels, out_channels, base_channels)
    _load_reference_weights(generator, state, architecture, size, path, arch, norm, channels)
    return generator.eval(), config


def _load_reference_weights(
    generator: nn.Module,
    state: dict[str, torch.Tensor],
    architecture: str,
    size: int,
    path: Path,
    arch: str,
    norm: str,
    channels: tuple[int, int, int],
) -> None:
    """Copy the reference's tensors into `generator` by our key map, or say exactly which keys or
    shapes do not match."""
    in_channels, out_channels, base_channels = channels
    keys = set(state)
    modules = _unet_modules(size) if architecture == "unet" else {}
    ours = generator.state_dict()
    mapping = {key: _reference_key(key, architecture, modules) for key in ours}
    expected = {ref for ref, _ in mapping.values()}
    missing = sorted(ref for ref in expected - keys if not ref.endswith(".num_batches_tracked"))
    unexpected = sorted(keys - expected)
    if missing or unexpected:
        raise ReferenceImportError(_mismatch(path, arch, norm, keys, missing, unexpected))

    converted = {}
    for key, (ref, swap) in mapping.items():
        if ref not in state:  # num_batches_tracked of pre-0.4 files: unused by eval and paper modes
            converted[key] = torch.zeros_like(ours[key])
            continue
        tensor = state[ref]
        if tensor.shape != ours[key].shape:
            raise ReferenceImportError(
                f"{path}: {ref} has shape {tuple(tensor.shape)}, expected {tuple(ours[key].shape)} for --arch {arch} "
                f"with {in_channels} -> {out_channels} channels and ngf {base_channels}"
            )
        if swap:  # ConvTranspose2d weight (C_in, C_out, k, k): reference [skip, up] -> ours [up, skip]
            half = tensor.shape[0] // 2
            tensor = torch.cat([tensor[half:], tensor[:half]])
        converted[key] = tensor.to(ours[key].dtype)
    generator.load_state_dict(converted)


def import_reference(
    path: str | Path,
    out: str | Path,
    arch: str,
    norm: str,
    direction: str = "AtoB",
    dropout: bool | None = None,
    overwrite: bool = False,
) -> ModelConfig:
    """Convert a reference `latest_net_G.pth` into a model folder (config.json +
    model.safetensors + README.md) that `Pix2Pix.load` and `pix2pix translate` read. Returns the config."""
    out = Path(out)
    if (out / MODEL_CONFIG).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a model; choose another folder or pass --overwrite")
    state = load_reference_state(path)
    generator, config = convert_reference(state, arch, norm, direction, dropout, source=path)
    save_model(out, generator, config)
    return config
