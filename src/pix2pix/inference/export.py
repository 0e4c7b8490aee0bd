"""Export a trained generator to ONNX, run it with ONNX Runtime, and check the two agree.

The graph is exported in eval mode (dropout off, the running batch-norm statistics), so it is
deterministic; the paper's stochastic inference (section 3.3) stays with the PyTorch backend.
Batch, height and width are dynamic: height and width may be any multiple of the generator's
size multiple (2**depth for the U-Net, 4 for the ResNet generator). The model configuration
travels inside the file as ONNX metadata (`pix2pix.config`, `pix2pix.size_multiple`, ...), so
translation can pad correctly without the model folder.

Needs the optional packages of the `export` extra (onnx, onnxscript, onnxruntime).

Example:
    >>> model = Pix2Pix.load("runs/shapes/model")                            # doctest: +SKIP
    >>> export_onnx(model.generator, model.config, "shapes.onnx")            # doctest: +SKIP
    >>> onnx_model = load_onnx("shapes.onnx")        # a Pix2Pix, eval mode  # doctest: +SKIP
    >>> check_parity(model.generator, onnx_model.generator)                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .. import extras
from ..data.images import mode_for_channels, open_image, to_tensor
from ..extras import MissingExtraError  # noqa: F401 - raised by require, named in docs
from ..hub.folder import fsync_replace
from ..hub.model_config import CheckpointError, ModelConfig
from ..progress import progress_bar
from ..version import __version__
from .generator import generator_mode, run_generator, size_multiple
from .predict import Pix2Pix

ONNX_OPSET = 18  # the dynamo exporter's own default; ONNX Runtime >= 1.14 runs it
PARITY_TOLERANCE = 1e-4  # max |ORT - PyTorch| accepted in eval mode, for the paper's U-Net at 256 px
INSTALL_HINT = 'pip install "pix2pix[export]"'
EXPORT_PACKAGES = ("onnx", "onnxscript")  # torch.onnx.export(dynamo=True) imports both
RUNTIME_PACKAGES = ("onnxruntime",)
META_PREFIX = "pix2pix."


def require(packages: Sequence[str], purpose: str) -> list[ModuleType]:
    """Import the optional `packages`, or raise MissingExtraError naming them and the extra."""
    return extras.require(packages, purpose, INSTALL_HINT)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's chatter (optional torchvision ops, deprecations inside torch)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    generator: nn.Module, config: ModelConfig | dict[str, Any], out: str | Path, opset: int = ONNX_OPSET
) -> Path:
    """Write `generator` in eval mode to the ONNX file `out` (one self-contained file, written atomically).

    Uses the torch.export-based exporter (the default since torch 2.9; the TorchScript one is
    deprecated). Input `input` and output `output` are (batch, C, H, W) with H and W any
    multiples of the generator's size multiple; `config` (a model folder's config.json) is
    stored as metadata. Returns `out`.

    Example:
        >>> G = UNetGenerator(3, 3, base_channels=4, depth=5)              # doctest: +SKIP
        >>> export_onnx(G, {"architecture": "unet", ...}, "g.onnx")        # doctest: +SKIP
    """
    require(EXPORT_PACKAGES, "ONNX export")
    out = Path(out)
    multiple = size_multiple(generator)
    card = config if isinstance(config, ModelConfig) else ModelConfig.from_json(config)
    in_channels = card.in_channels
    # Example input: batch 2 and a bottleneck of at least 2x2, because torch.export would
    # specialise any dimension that is 1 in the example; >= 64 px for the ResNet's 7x7 pads.
    side = multiple * max(2, math.ceil(64 / multiple))
    device = next(generator.parameters()).device
    example = torch.zeros(2, in_channels, side, side, device=device)
    batch = torch.export.Dim("batch", min=1)
    # H = multiple * h: the graph itself says which sizes it accepts ("256*h" at depth 8)
    height, width = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
    dynamic = ({0: batch, 2: multiple * height, 3: multiple * width},)
    with generator_mode(generator, "eval"), _quiet_exporter():
        program = torch.onnx.export(
            generator,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            dynamic_shapes=dynamic,
            verbose=False,
        )
    model = program.model
    model.doc_string = (
        f"pix2pix generator (Isola et al., CVPR 2017), eval mode. input: (batch, {in_channels}, H, W) in [-1, 1] with "
        f"H, W multiples of {multiple} (reflection-pad, then crop the output back); output in [-1, 1]."
    )
    metadata = {
        "config": json.dumps(card.to_json(), sort_keys=True),
        "size_multiple": str(multiple),
        "in_channels": str(in_channels),
        "out_channels": str(card.out_channels),
        "direction": card.direction,
        "mode": "eval",
        "version": __version__,
    }
    model.metadata_props.update({META_PREFIX + k: v for k, v in metadata.items()})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=out.name + ".") as tmp:
        tmp_file = Path(tmp) / out.name
        program.save(tmp_file, external_data=False)  # < 2 GB: one file, weights included
        fsync_replace(tmp_file, out)
    return out


def _providers(ort: ModuleType, device: str | torch.device) -> list[str]:
    kind = torch.device(device).type if str(device) != "auto" else "auto"
    available = ort.get_available_providers()
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if kind == "auto":
        return ["CPUExecutionProvider"]
    raise ValueError(f"device {device}: this onnxruntime has no CUDA provider (available: {', '.join(available)})")


class OnnxGenerator(nn.Module):
    """An exported generator run by ONNX Runtime, usable wherever predict.py takes a generator.

    Only eval mode exists in the graph: calling it in training mode (what `--mode paper` does)
    raises a ValueError. Takes and returns CPU float tensors (B, C, H, W), H and W multiples of
    `size_multiple` (read from the file's metadata, as is `config`).
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu") -> None:
        super().__init__()
        (ort,) = require(RUNTIME_PACKAGES, "the onnxruntime backend")
        path = Path(path)
        if not path.is_file():
            what = "is a folder, not an ONNX file" if path.is_dir() else "no such ONNX file"
            raise CheckpointError(f"{path}: {what} (write one with `pix2pix export --model FOLDER OUT.onnx`)")
        try:
            self.session = ort.InferenceSession(str(path), providers=_providers(ort, device))
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
            raise CheckpointError(f"{path}: not a readable ONNX model ({err})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_PREFIX + "config" not in meta:
            raise CheckpointError(f"{path}: no pix2pix metadata in this ONNX file; export it with `pix2pix export`")
        self.path = path
        self.config = ModelConfig.from_json(json.loads(meta[META_PREFIX + "config"]))
        self.size_multiple = int(meta[META_PREFIX + "size_multiple"])
        self.input_name = self.session.get_inputs()[0].name
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            raise ValueError(
                f"{self.path}: an ONNX generator runs in eval mode only (dropout off, running batch-norm "
                "statistics): translate with mode='eval'; the paper's stochastic inference needs the PyTorch model"
            )
        (y,) = self.session.run(None, {self.input_name: x.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(y)  # (B, C_out, H, W)


def load_onnx(path: str | Path, device: str | torch.device = "cpu") -> Pix2Pix:
    """A Pix2Pix whose generator is the ONNX file at `path`, run by ONNX Runtime.

    Eval mode only: call `translate(..., mode="eval")` and `translate_files(..., mode="eval")`.
    """
    generator = OnnxGenerator(path, device)
    return Pix2Pix(generator, generator.config)


def float32_error(exact_generator: nn.Module, x: torch.Tensor, expected: torch.Tensor) -> float:
    """Max |G(x) in float32 - G(x) in float64|: PyTorch's own rounding error on this input, with
    `exact_generator` a float64 copy of G (copy.deepcopy(G).double())."""
    exact = run_generator(exact_generator, x.double(), mode="eval")
    return (expected.double() - exact).abs().max().item()


def parity_tolerance(rounding: float) -> float:
    """The max |ORT - PyTorch| accepted where PyTorch's float32 output is `rounding` away from
    float64's. ONNX Runtime computes the same float32 sums in another order, so its own error is
    of the same size: the two may differ by twice it; 4x leaves room for where the errors fall.
    Never below PARITY_TOLERANCE (the paper's U-Net's own error is well below that)."""
    return max(PARITY_TOLERANCE, 4 * rounding)


@dataclass(frozen=True)
class ParityResult:
    source: str  # "random" or the image's path
    shape: tuple[int, ...]  # (B, C, H, W) of the input before padding
    max_abs_diff: float
    psnr: float = math.inf  # dB of the ONNX output against PyTorch's, images in [0, 1]
    tolerance: float = PARITY_TOLERANCE  # parity_tolerance on this input

    @property
    def ok(self) -> bool:
        return self.max_abs_diff < self.tolerance


def default_check_sizes(multiple: int) -> list[tuple[int, int]]:
    """Two different (H, W): a square and a larger 2:3 one, both multiples of `multiple`."""
    side = multiple * max(1, math.ceil(64 / multiple))
    return [(side, side), (2 * side, 3 * side)]


def check_parity(
    generator: nn.Module,
    onnx_generator: OnnxGenerator,
    images: Sequence[str | Path] = (),
    sizes: Sequence[tuple[int, int]] | None = None,
    batch_size: int = 2,
    seed: int = 0,
    progress: bool = False,
) -> list[ParityResult]:
    """Max |ONNX Runtime - PyTorch| in eval mode, through translate's padding and cropping.

    On random inputs in [-1, 1] of `batch_size` at each (H, W) of `sizes` (default: two sizes,
    see default_check_sizes), and on each image file in `images` (any size, whole image).
    Each result's `ok` says whether it is below its tolerance: PARITY_TOLERANCE, or more where
    PyTorch's own float32 rounding on that input is larger (parity_tolerance).

    Example:
        >>> results = check_parity(model.generator, OnnxGenerator("g.onnx"))    # doctest: +SKIP
        >>> all(r.ok for r in results)                                          # doctest: +SKIP
        True
    """
    in_channels = onnx_generator.config.in_channels
    rng = torch.Generator().manual_seed(seed)
    inputs: list[tuple[str, torch.Tensor]] = []
    for h, w in sizes if sizes is not None else default_check_sizes(size_multiple(generator)):
        inputs.append(("random", torch.rand(batch_size, in_channels, h, w, generator=rng) * 2 - 1))
    for path in images:
        img = open_image(Path(path), "RGB").convert(mode_for_channels(in_channels))
        inputs.append((str(path), to_tensor(img)[None]))
    results, exact_generator = [], copy.deepcopy(generator).double()
    for source, x in progress_bar(inputs, "parity", progress, unit="input"):
        expected = run_generator(generator, x, mode="eval")
        actual = run_generator(onnx_generator, x, mode="eval")
        diff = (expected - actual).abs().max().item()
        mse = ((expected - actual) / 2).square().mean().item()  # [-1, 1] -> [0, 1]
        psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
        tolerance = parity_tolerance(float32_error(exact_generator, x, expected))
        results.append(ParityResult(source, tuple(x.shape), diff, psnr, tolerance))
    return results
