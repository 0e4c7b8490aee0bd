"""Feature networks for FID, KID and LPIPS, in plain torch, run only with the standard weights.

Scores are comparable with published ones only when computed with the same networks and the
same pretrained weights, so this module never falls back to random weights: every metric first
finds its standard weight file (`find_weights`), checks its size and SHA-256, and loads it with
`strict=True`; a missing, altered or mismatched file stops with `WeightsMissingError` (or, for a
file of the right hash but the wrong keys, a RuntimeError) before anything is computed.

- FID / KID: the InceptionV3 of pytorch-fid (`fid_inception_v3`), which reproduces the TensorFlow
  graph of Heusel et al. 2017 (inception-2015-12-05): torchvision's Inception3 layout with the
  FIDInceptionA/C/E_1/E_2 blocks (3x3 average pools that leave the zero padding out of the mean,
  a max pool in the last block's pool branch), BatchNorm eps 0.001 and a 1008-class fc that the
  file holds but the features skip. Images are resized to 299x299 (bilinear) and scaled to
  [-1, 1]; the features are the 2048-d output of the final average pool ("pool3").
- LPIPS (Zhang et al. 2018, v0.1) with its default AlexNet trunk: torchvision's AlexNet, the
  outputs of its five ReLUs, each unit-normalised along channels; the squared difference of the
  two images' features is weighted per channel by the learned 1x1 convs lin0..lin4, averaged over
  space and summed over layers. Inputs are in [-1, 1].

The module and parameter names equal the state-dict keys of the standard files, so they load
as they are: `Conv2d_1a_3x3.conv.weight`, `Mixed_7c.branch_pool.bn.running_var`, `fc.weight`;
`features.0.weight`, `classifier.6.bias`; `lin0.model.1.weight`.

Weights are looked for in a folder: `--weights-dir DIR`, else `$PIX2PIX_WEIGHTS`, else
~/.cache/pix2pix/weights.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .distances import fid_from_features, kernel_distance

# --- the standard weight files ------------------------------------------------------------------

WEIGHTS_ENV = "PIX2PIX_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "~/.cache/pix2pix/weights"


@dataclass(frozen=True)
class WeightFile:
    """One standard weight file: where it comes from and what identifies it.

    `sha256` is the full hex digest (64 digits), which `find_weights` compares whole, or, where
    only a prefix is known, that prefix, which it compares as a prefix; `provenance` says where
    the size and digest come from.
    """

    name: str
    url: str
    size: int | None  # bytes; None where no size is known
    sha256: str
    purpose: str
    provenance: str

    @property
    def full_hash(self) -> bool:
        return len(self.sha256) == 64

    def describe_hash(self) -> str:
        return (
            f"SHA-256 {self.sha256}" if self.full_hash else f"SHA-256 beginning {self.sha256} (only a prefix is known)"
        )

    def describe_size(self) -> str:
        return f"{self.size:,} bytes" if self.size is not None else "size not published"


FID_INCEPTION = "pt_inception-2015-12-05-6726825d.pth"
ALEXNET = "alexnet-owt-7be5be79.pth"
LPIPS_ALEX_LINEAR = "alex.pth"

_WEIGHT_FILES = (
    WeightFile(
        name=FID_INCEPTION,
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_INCEPTION,
        size=95_628_359,
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        purpose="pytorch-fid's InceptionV3 (TensorFlow's inception-2015-12-05 ported to PyTorch), for FID and KID",
        provenance=(
            "pytorch-fid publishes only the first 8 hex digits of the SHA-256, in the file name (torch.hub "
            "convention; pytorch-fid itself does not check it). The size and full digest are those recorded by "
            "several independent public projects that pin this file; the digest begins with the published prefix."
        ),
    ),
    WeightFile(
        name=ALEXNET,
        url="https://download.pytorch.org/models/" + ALEXNET,
        size=244_408_911,
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        purpose="torchvision's ImageNet AlexNet (AlexNet_Weights.IMAGENET1K_V1), the trunk of LPIPS",
        provenance=(
            "torchvision publishes the first 8 hex digits of the SHA-256 in the file name and checks them when it "
            "downloads (check_hash=True). The size (the server's Content-Length) and full digest are those recorded "
            "by several independent public projects that pin this file; the digest begins with the published prefix."
        ),
    ),
    WeightFile(
        name=LPIPS_ALEX_LINEAR,
        url="https://raw.githubusercontent.com/richzhang/PerceptualSimilarity/master/lpips/weights/v0.1/alex.pth",
        size=6_009,
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        purpose="the LPIPS v0.1 linear layers lin0..lin4 for the AlexNet trunk (richzhang/PerceptualSimilarity)",
        provenance=(
            "Size and digest measured on lpips/weights/v0.1/alex.pth of the lpips 0.1.4 wheel on PyPI, which its "
            "RECORD confirms; public records of the repository file agree. The same file ships in that wheel."
        ),
    ),
)
WEIGHT_FILES: Mapping[str, WeightFile] = {w.name: w for w in _WEIGHT_FILES}

# Files each metric needs, in the order they are checked.
METRIC_WEIGHTS: Mapping[str, tuple[str, ...]] = {
    "fid": (FID_INCEPTION,),
    "kid": (FID_INCEPTION,),
    "lpips": (ALEXNET, LPIPS_ALEX_LINEAR),
}
METRICS = tuple(METRIC_WEIGHTS)


class WeightsMissingError(ValueError):
    """A standard weight file is missing or is not the expected file; the message says which file,
    its size and SHA-256, where to download it and where to put it."""


def default_weights_dir() -> Path:
    """$PIX2PIX_WEIGHTS if set, else ~/.cache/pix2pix/weights."""
    return Path(os.environ.get(WEIGHTS_ENV) or DEFAULT_WEIGHTS_DIR).expanduser()


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


_NAME_HASH = re.compile(r"-([0-9a-f]{8,})\.")  # torch.hub: a file name carries its SHA-256's first digits


def _where_to_put(target: Path) -> str:
    return (
        f"Put it at {target} (or in another folder given by --weights-dir DIR or ${WEIGHTS_ENV}; "
        f"the default folder is {DEFAULT_WEIGHTS_DIR})."
    )


# Files that an installed package ships (found through its metadata, never imported): the lpips
# wheel carries LPIPS's linear heads. They are hash-checked like any other copy.
PACKAGED = {LPIPS_ALEX_LINEAR: ("lpips", "lpips/weights/v0.1/alex.pth")}


def packaged_copy(name: str) -> Path | None:
    """Where an installed distribution holds the standard file `name`, if one does."""
    from importlib import metadata

    if name not in PACKAGED:
        return None
    distribution, relative = PACKAGED[name]
    try:
        path = Path(metadata.distribution(distribution).locate_file(relative))
    except metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _verify(spec: WeightFile, weights_dir_or_file: str | Path | None) -> tuple[Path, str]:
    """The path of `spec`'s file and its full SHA-256, or WeightsMissingError. Without the file in
    the weights folder, a copy shipped by an installed package (PACKAGED) is used."""
    where = default_weights_dir() if weights_dir_or_file is None else Path(weights_dir_or_file).expanduser()
    path = where if where.is_file() or where.name == spec.name else where / spec.name
    if not path.is_file() and not where.is_file():
        path = packaged_copy(spec.name) or path
    wanted = f"{spec.name} ({spec.describe_size()}, {spec.describe_hash()})"
    if not path.is_file():
        raise WeightsMissingError(
            f"Missing weight file {wanted}: nothing at {path}. It holds {spec.purpose}.\n"
            f"Download it from {spec.url}\n{_where_to_put(path)}\n"
            "Scores are never computed with random weights."
        )
    size = path.stat().st_size
    digest = sha256_of(path)
    size_ok = spec.size is None or size == spec.size
    hash_ok = digest == spec.sha256 if spec.full_hash else digest.startswith(spec.sha256)
    if not (size_ok and hash_ok):
        problems = []
        if not hash_ok:
            expected = spec.sha256 if spec.full_hash else f"{spec.sha256}... (prefix)"
            problems.append(f"its SHA-256 differs: found {digest}, expected {expected}")
            published = _NAME_HASH.search(spec.name)
            if spec.full_hash and published and digest.startswith(published.group(1)):
                problems.append(
                    f"yet it begins with {published.group(1)}, the prefix published in the name, so the full digest "
                    "recorded here may be wrong: please report it"
                )
        if not size_ok:
            problems.append(f"its size differs: found {size:,} bytes, expected {spec.size:,}")
        raise WeightsMissingError(
            f"{path} is not the expected {wanted}: {'; '.join(problems)}. It may be truncated, another version "
            f"or another file of the same name.\nDownload it again from {spec.url}\n{_where_to_put(path)}"
        )
    return path, digest


def find_weights(name: str, weights_dir_or_file: str | Path | None = None) -> Path:
    """The path of the standard weight file `name` (a key of WEIGHT_FILES), once its size and
    SHA-256 are checked; `weights_dir_or_file` is the folder holding it, or the file itself
    (default: `default_weights_dir()`). Raises WeightsMissingError if it is missing or differs.

    Example:
        >>> find_weights("pt_inception-2015-12-05-6726825d.pth", "~/weights")  # doctest: +SKIP
        PosixPath('/home/me/weights/pt_inception-2015-12-05-6726825d.pth')
    """
    if name not in WEIGHT_FILES:
        raise ValueError(f"unknown weight file {name!r}; the standard ones are {sorted(WEIGHT_FILES)}")
    return _verify(WEIGHT_FILES[name], weights_dir_or_file)[0]


def _load_state_dict(module: nn.Module, path: Path) -> nn.Module:
    """Load `path` into `module` strictly: a missing, unexpected or mis-shaped key raises."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{path} does not fit {type(module).__name__}: {err}") from err
    return module.eval()


# --- FID InceptionV3 (pytorch-fid) --------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv without bias, BatchNorm with TensorFlow's eps 0.001, ReLU (torchvision's BasicConv2d)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's 3x3 'SAME' average pool divides by the pixels inside the image only; PyTorch's
    # default would count the zero padding and darken the borders.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """Mixed_5b/5c/5d at 35x35: (N, C, 35, 35) -> (N, 224 + pool_features, 35, 35)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """Mixed_6a, the 35 -> 17 reduction: (N, 288, 35, 35) -> (N, 768, 17, 17)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionC(nn.Module):
    """Mixed_6b..6e at 17x17 with factorised 7x7 convs: (N, 768, 17, 17) -> (N, 768, 17, 17)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            bd = conv(bd)
        bd = self.branch7x7dbl_5(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """Mixed_7a, the 17 -> 8 reduction: (N, 768, 17, 17) -> (N, 1280, 8, 8)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class FIDInceptionE(nn.Module):
    """Mixed_7b (FIDInceptionE_1, pool="avg") and Mixed_7c (FIDInceptionE_2, pool="max") at 8x8:
    (N, C, 8, 8) -> (N, 2048, 8, 8). The TensorFlow graph has a max pool in Mixed_7c's pool
    branch where the paper has an average (pytorch-fid keeps it, and so must FID)."""

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)  # (N, 768, 8, 8)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)  # (N, 768, 8, 8)
        pooled = _tf_avg_pool(x) if self.pool == "avg" else F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """pytorch-fid's InceptionV3 up to pool3: (N, 3, H, W) in [0, 1] -> (N, 2048).

    Built untrained: only `PerceptualScorer` loads it, with the verified standard weights.

    Example:
        >>> FIDInceptionV3()(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 2048])
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)  # 299 -> 149
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)  # -> 147
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)  # max pool -> 73
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)  # -> 71, max pool -> 35
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)  # (N, 256, 35, 35)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)  # (N, 288, 35, 35)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)  # (N, 768, 17, 17)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)  # (N, 1280, 8, 8)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")  # (N, 2048, 8, 8)
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)  # the TF graph's 1008 classes: in the file, unused by FID

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (N, 3, H, W), got shape {tuple(x.shape)}")
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = 2 * x - 1  # [0, 1] -> [-1, 1], the range the TF graph was trained on
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        for block in (self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean((2, 3))  # (N, 2048): the global average pool, "pool3"


# --- LPIPS with AlexNet -------------------------------------------------------------------------

ALEXNET_RELUS = (1, 4, 7, 9, 11)  # indices in `features` of the ReLUs after conv1..conv5
LPIPS_CHANNELS = (64, 192, 384, 256, 256)  # channels at those ReLUs
# lpips ScalingLayer: maps [-1, 1] inputs to roughly the ImageNet-normalised range AlexNet expects
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_MIN_SIZE = 31  # smallest side for which conv5 still has an output


class AlexNet(nn.Module):
    """torchvision's AlexNet ("One weird trick", Krizhevsky 2014); LPIPS uses only `features`, but
    the classifier is in the standard file and must be here to load it strictly."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, 1000),
        )

    def relu_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five ReLU outputs for (N, 3, H, W): (N, 64, H/4, W/4) ... (N, 256, H/16, W/16) roughly."""
        taps = []
        for i, layer in enumerate(self.features[: ALEXNET_RELUS[-1] + 1]):
            x = layer(x)
            if i in ALEXNET_RELUS:
                taps.append(x)
        return taps


class LinearHead(nn.Module):
    """lpips NetLinLayer: dropout (identity in eval) then a 1x1 conv to one channel, no bias; the
    weights are the learned per-channel importance of one layer's squared feature difference."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, kernel_size=1, bias=False))


class LPIPSLinearHeads(nn.Module):
    """lin0..lin4, the contents of the LPIPS v0.1 alex.pth."""

    def __init__(self) -> None:
        super().__init__()
        for i, channels in enumerate(LPIPS_CHANNELS):
            self.add_module(f"lin{i}", LinearHead(channels))

    def __iter__(self) -> Iterator[LinearHead]:
        return iter(self.children())


def _unit_normalise(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return features / (features.pow(2).sum(1, keepdim=True).sqrt() + eps)  # unit length along channels


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet trunk: (N, 3, H, W) x2 in [-1, 1] -> (N,) distances.

    Built untrained: only `PerceptualScorer` loads it, with the verified standard weights.

    Example:
        >>> x = torch.rand(2, 3, 64, 64) * 2 - 1
        >>> LPIPS()(x, x).shape
        torch.Size([2])
    """

    def __init__(self) -> None:
        super().__init__()
        self.alexnet = AlexNet()
        self.heads = LPIPSLinearHeads()
        # constants, not weights: kept out of the state dict, which must equal the files'
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected two images (N, 3, H, W) of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        if min(x.shape[-2:]) < LPIPS_MIN_SIZE:
            raise ValueError(
                f"LPIPS with AlexNet needs sides of at least {LPIPS_MIN_SIZE} px, got {tuple(x.shape[-2:])}"
            )
        feats_x = self.alexnet.relu_features((x - self.shift) / self.scale)
        feats_y = self.alexnet.relu_features((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for fx, fy, head in zip(feats_x, feats_y, self.heads):
            diff = (_unit_normalise(fx) - _unit_normalise(fy)) ** 2  # (N, C, h, w)
            total = total + head.model(diff).mean((1, 2, 3))  # weighted over C, averaged over h, w
        return total


def _load_fid_inception(path: Path) -> FIDInceptionV3:
    return _load_state_dict(FIDInceptionV3(), path)


def _load_lpips(alexnet_path: Path, linear_path: Path) -> LPIPS:
    net = LPIPS()
    _load_state_dict(net.alexnet, alexnet_path)
    _load_state_dict(net.heads, linear_path)
    return net.eval()


# --- scores -------------------------------------------------------------------------------------


def _check_images(real: Sequence[np.ndarray], fake: Sequence[np.ndarray], which: tuple[str, ...]) -> None:
    if len(real) != len(fake):
        raise ValueError(f"real and fake differ in number: {len(real)} vs {len(fake)} images")
    least = 2 if {"fid", "kid"} & set(which) else 1
    if len(real) < least:
        raise ValueError(f"{'/'.join(which)} need at least {least} image pairs, got {len(real)}")
    for kind, images in (("real", real), ("fake", fake)):
        for i, image in enumerate(images):
            shape = np.shape(image)
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"{kind} image {i}: expected (H, W, 3), got shape {shape}")
            lo, hi = float(np.min(image)), float(np.max(image))
            if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
                raise ValueError(f"{kind} image {i}: values must lie in [0, 1], found [{lo:g}, {hi:g}]")
    if "lpips" in which:
        for i, (a, b) in enumerate(zip(real, fake)):
            if np.shape(a) != np.shape(b):
                raise ValueError(
                    f"LPIPS compares pairs: real and fake image {i} differ in shape, {np.shape(a)} vs {np.shape(b)}"
                )
            if min(np.shape(a)[:2]) < LPIPS_MIN_SIZE:
                raise ValueError(
                    f"image pair {i}: LPIPS needs sides of at least {LPIPS_MIN_SIZE} px, got {np.shape(a)[:2]}"
                )


def _batches(images: Sequence[np.ndarray], batch_size: int, device: str | torch.device) -> Iterator[torch.Tensor]:
    """Consecutive images of one shape, at most batch_size, as (B, 3, H, W) float32 in [0, 1]."""
    start = 0
    while start < len(images):
        stop = start + 1
        while stop < len(images) and stop - start < batch_size and np.shape(images[stop]) == np.shape(images[start]):
            stop += 1
        batch = np.stack([np.asarray(im, dtype=np.float32) for im in images[start:stop]])
        yield torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)
        start = stop


@torch.inference_mode()
def _inception_features(net: FIDInceptionV3, images, batch_size: int, device) -> np.ndarray:
    return np.concatenate([net(x).double().cpu().numpy() for x in _batches(images, batch_size, device)])  # (N, 2048)


@torch.inference_mode()
def _lpips_distances(net: LPIPS, real, fake, batch_size: int, device) -> np.ndarray:
    out = [
        net(2 * a - 1, 2 * b - 1).double().cpu().numpy()  # [0, 1] -> [-1, 1]
        for a, b in zip(_batches(real, batch_size, device), _batches(fake, batch_size, device))
    ]
    return np.concatenate(out)  # (N,)


def _metrics(which: Sequence[str] | str) -> tuple[str, ...]:
    """`which` as a tuple without repeats, checked against METRICS."""
    which = tuple(dict.fromkeys((which,) if isinstance(which, str) else which))
    unknown = [m for m in which if m not in METRIC_WEIGHTS]
    if unknown or not which:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    return which


class PerceptualScorer:
    """The networks of `which` (fid, kid, lpips), their files checked and loaded once, to score
    many (real, fake) lists: `pix2pix evaluate` scores once, validation during training at every
    validation. Every file for every requested metric is checked before anything is loaded, and
    all that are missing are reported at once (WeightsMissingError).

    `registry` exists for the round-trip tests, which register files they made; everything else
    uses WEIGHT_FILES.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        which: Sequence[str] = METRICS,
        device: str | torch.device = "cpu",
        batch_size: int = 16,
        registry: Mapping[str, WeightFile] | None = None,
    ) -> None:
        which = _metrics(which)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        registry = WEIGHT_FILES if registry is None else registry
        names = list(dict.fromkeys(name for metric in which for name in METRIC_WEIGHTS[metric]))
        found: dict[str, tuple[Path, str]] = {}
        problems = []
        for name in names:
            try:
                found[name] = _verify(registry[name], weights)
            except WeightsMissingError as err:
                problems.append(str(err))
        if problems:
            raise WeightsMissingError("\n\n".join(problems))
        self.which, self.device, self.batch_size = which, device, batch_size
        self.files = [{"name": name, "sha256": found[name][1], "path": str(found[name][0])} for name in names]
        wants_inception = "fid" in which or "kid" in which
        self.inception = _load_fid_inception(found[FID_INCEPTION][0]).to(device) if wants_inception else None
        wants_lpips = "lpips" in which
        self.lpips = _load_lpips(found[ALEXNET][0], found[LPIPS_ALEX_LINEAR][0]).to(device) if wants_lpips else None

    def __call__(self, real: Sequence[np.ndarray], fake: Sequence[np.ndarray]) -> dict[str, object]:
        _check_images(real, fake, self.which)
        scores: dict[str, object] = {"num_images": len(real)}
        if self.inception is not None:
            real_features = _inception_features(self.inception, real, self.batch_size, self.device)
            fake_features = _inception_features(self.inception, fake, self.batch_size, self.device)
            if "fid" in self.which:
                scores["fid"] = fid_from_features(real_features, fake_features)
            if "kid" in self.which:
                scores["kid_mean"], scores["kid_std"] = kernel_distance(real_features, fake_features)
        if self.lpips is not None:
            distances = _lpips_distances(self.lpips, real, fake, self.batch_size, self.device)
            scores["lpips_mean"] = float(distances.mean())
            scores["lpips_std"] = float(distances.std())
        scores["weights"] = self.files
        return scores


def _perceptual_scores(
    real: Sequence[np.ndarray],
    fake: Sequence[np.ndarray],
    weights: str | Path | None,
    which: Sequence[str],
    device: str | torch.device,
    batch_size: int,
    registry: Mapping[str, WeightFile],
) -> dict[str, object]:
    which = _metrics(which)
    _check_images(real, fake, which)  # bad inputs are refused before the weights are looked for
    return PerceptualScorer(weights, which, device, batch_size, registry)(real, fake)


def perceptual_scores(
    real: Sequence[np.ndarray],
    fake: Sequence[np.ndarray],
    weights: str | Path | None = None,
    which: Sequence[str] = METRICS,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> dict[str, object]:
    """FID, KID and LPIPS between `real` and `fake`, equal-length lists of (H, W, 3) float arrays
    in [0, 1] (paired by index for LPIPS, which needs each pair to share a shape).

    `weights` is the folder of the standard weight files (default: `default_weights_dir()`);
    every file the requested metrics need is checked (`find_weights`) before anything is
    computed, and WeightsMissingError names each one missing. Returns the requested ones of
    fid, kid_mean, kid_std (KID over 100 subsets of min(N, 1000) images), lpips_mean, lpips_std,
    with num_images and the weight files used (name, sha256, path).

    Example:
        >>> s = perceptual_scores(reals, fakes, "~/weights", which=("fid", "lpips"))  # doctest: +SKIP
        >>> sorted(s)  # doctest: +SKIP
        ['fid', 'lpips_mean', 'lpips_std', 'num_images', 'weights']
    """
    return _perceptual_scores(real, fake, weights, which, device, batch_size, WEIGHT_FILES)
