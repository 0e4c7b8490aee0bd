"""Seed 003's enhanced colorization generator: a U-Net whose encoder is a ResNet-18.

Seed 003 (section V.B, after its reference [4]) replaces the pix2pix encoder by a ResNet-18
pretrained on ImageNet, pre-trains the whole generator with L1 alone, then trains it with
L1 + cGAN. Its reference builds the net with fastai's `DynamicUnet` on a `resnet18` body; this
is that design in plain PyTorch:

- encoder: torchvision's ResNet-18 layout and parameter names (`conv1`, `bn1`, `layer1`-`layer4`),
  so that torchvision's ImageNet state dict loads into it as it is; its `fc` is not used;
- middle: two 3x3 conv-norm-ReLU blocks at 1/32 (512 -> 1024 -> 512), as fastai's middle conv;
- decoder: at each encoder stage (1/16, 1/8, 1/4, 1/2) upsample x2, concatenate the stage's
  features, two 3x3 conv-norm-ReLU blocks; fastai's channel rule (half the upsampled channels
  plus the skip's);
- head: upsample to full size, concatenate the input (fastai's `last_cross`), one conv block,
  a 1x1 conv to the output channels and Tanh, as the paper's G.

Departures from fastai's DynamicUnet: the x2 upsampling is a 4x4 stride-2 transposed conv (the
pix2pix decoder's) instead of PixelShuffle with ICNR init, the full-size head has 64 channels
and one conv block instead of the body's last width and a residual block (a quarter of the
cost at full size), no self-attention. Sides must be multiples of 32 (five stride-2 stages).
The encoder's norms are BatchNorm whatever --norm says (the pretrained statistics live there);
the decoder's follow --norm. There is no dropout: this generator has no noise z, as in seed 003.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import FIXED_SIZE_MULTIPLES
from ..data.download import sha256_file
from .norms import OneValueBatchNorm, norm_layer

# Recognised files, by the SHA-256 prefix that torchvision puts in their names (torch.hub checks
# downloads against the same prefix).
KNOWN_ENCODERS = {
    "f37072fd": "torchvision's ImageNet ResNet-18 (ResNet18_Weights.IMAGENET1K_V1, resnet18-f37072fd.pth)",
    "5c106cde": "torchvision's original ImageNet ResNet-18 (resnet18-5c106cde.pth)",
}


def stage_channels(width: int = 64) -> tuple[int, ...]:
    """Channels of the stem (1/2), layer1 (1/4), layer2 (1/8), layer3 (1/16), layer4 (1/32):
    ResNet-18's 64, 64, 128, 256, 512 at width 64 (other widths: tiny test models)."""
    return (width, width, 2 * width, 4 * width, 8 * width)


def _norm(kind: str, channels: int) -> nn.Module:
    """The decoder's norm (--norm); batch norm also where a channel has one value in the batch
    (1 x 1 at 1/32 of a 32 px image at batch 1), as the encoder's."""
    return _bn(channels) if kind == "batch" else norm_layer(kind, channels)


def _bn(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d (the same parameters and state dict) that does not refuse one value per
    channel, which training and paper-mode inference meet at 1/32 of small images."""
    return OneValueBatchNorm(channels)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, with its parameter names: two 3x3 convs and a shortcut
    (a 1x1 stride-2 conv + BN where the block halves the size)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = _bn(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _bn(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + shortcut)


class ResNet18Encoder(nn.Module):
    """ResNet-18 without its classifier; returns the features of its five stages.

    (B, C_in, H, W) -> [(B, 64, H/2, W/2), (B, 64, H/4), (B, 128, H/8), (B, 256, H/16), (B, 512, H/32)]
    """

    def __init__(self, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        c = stage_channels(width)
        self.conv1 = nn.Conv2d(in_channels, c[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = _bn(c[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(c[0], c[1], 1), BasicBlock(c[1], c[1], 1))
        self.layer2 = nn.Sequential(BasicBlock(c[1], c[2], 2), BasicBlock(c[2], c[2], 1))
        self.layer3 = nn.Sequential(BasicBlock(c[2], c[3], 2), BasicBlock(c[3], c[3], 1))
        self.layer4 = nn.Sequential(BasicBlock(c[3], c[4], 2), BasicBlock(c[4], c[4], 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(stem))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        return [stem, f1, f2, f3, self.layer4(f3)]


def conv_block(cin: int, cout: int, norm: str) -> nn.Sequential:
    """3x3 conv, norm, ReLU (fastai's ConvLayer); no conv bias in front of batch norm."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=norm != "batch"), _norm(norm, cout), nn.ReLU())


class UpBlock(nn.Module):
    """x2 up, then the skip's features concatenated, then two conv blocks.
    (B, up_in, h, w) and (B, skip, 2h, 2w) -> (B, out, 2h, 2w)."""

    def __init__(self, up_in: int, skip: int, out: int, norm: str) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.ConvTranspose2d(up_in, up_in // 2, 4, stride=2, padding=1, bias=norm != "batch"),
            _norm(norm, up_in // 2),
            nn.ReLU(),
        )
        self.convs = nn.Sequential(conv_block(up_in // 2 + skip, out, norm), conv_block(out, out, norm))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(torch.cat([self.up(x), skip], 1))


class ResNetUNetGenerator(nn.Module):
    """`--generator resnet18-unet`: seed 003's enhanced colorization G (see the module's text).
    `base_channels` (--g-channels) is ResNet-18's first width, 64; only 64 takes ResNet-18 weights.

    Example:
        >>> G = ResNetUNetGenerator(1, 2)
        >>> G(torch.zeros(1, 1, 64, 64)).shape
        torch.Size([1, 2, 64, 64])
    """

    size_multiple = FIXED_SIZE_MULTIPLES["resnet18-unet"]

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, base_channels: int = 64, norm: str = "batch"
    ) -> None:
        super().__init__()
        *skips, deepest = stage_channels(base_channels)
        self.encoder = ResNet18Encoder(in_channels, base_channels)
        self.middle = nn.Sequential(conv_block(deepest, 2 * deepest, norm), conv_block(2 * deepest, deepest, norm))
        blocks, up_in = [], deepest
        for skip in reversed(skips):  # 256 at 1/16, 128, 64, 64 at 1/2
            out = up_in // 2 + skip  # fastai's rule: 512, 384, 256, 192
            blocks.append(UpBlock(up_in, skip, out, norm))
            up_in = out
        self.decoder = nn.ModuleList(blocks)
        c = base_channels
        self.head_up = nn.Sequential(
            nn.ConvTranspose2d(up_in, c, 4, stride=2, padding=1, bias=norm != "batch"), _norm(norm, c), nn.ReLU()
        )
        self.head = nn.Sequential(conv_block(c + in_channels, c, norm), nn.Conv2d(c, out_channels, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *skips, y = self.encoder(x)
        y = self.middle(y)
        for block, skip in zip(self.decoder, reversed(skips)):
            y = block(y, skip)
        return self.head(torch.cat([self.head_up(y), x], 1))


# --- the encoder's weights from a torchvision-format file --------------------------------------


class EncoderWeightsError(ValueError):
    """An --encoder-weights file that is not a ResNet-18 state dict; the message names the file."""


@dataclass(frozen=True)
class EncoderWeights:
    """A checked ResNet-18 state dict, its stem fitted to the input channels."""

    path: str
    sha256: str
    state: dict[str, torch.Tensor]

    @property
    def source(self) -> str:
        """What the file is: torchvision's official file, recognised by its hash, or the path."""
        known = KNOWN_ENCODERS.get(self.sha256[:8])
        return known or f"{Path(self.path).name} (not a file this tool knows; sha256 {self.sha256[:16]}...)"


def _read_state_dict(path: Path) -> dict:
    """The file's tensors, read without running any code it may hold."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as e:
            raise EncoderWeightsError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EncoderWeightsError(
            f"{path}: refused: it holds Python objects beyond tensors, which are not loaded (they could "
            f"run code); save a plain state dict (torch.save(model.state_dict(), ...)) ({first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EncoderWeightsError(
            f"{path}: cannot be read as a PyTorch state dict (truncated, or not one): {first}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint around the weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderWeightsError(f"{path}: not a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _fit_stem(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """conv1's RGB filters (64, 3, 7, 7) for `in_channels` inputs, such that the same grey on
    every input channel gets the response the RGB net gives to that grey on R, G and B (the sum
    of the filters over channels is kept). One channel: the sum over RGB (fastai's rule). Two:
    half the sum each. More than three: R, G, B scaled by 3/n, each extra channel the sum / n."""
    rgb = weight.shape[1]
    if in_channels == rgb:
        return weight
    total = weight.sum(1, keepdim=True)
    if in_channels < rgb:
        return (total / in_channels).expand(-1, in_channels, -1, -1).clone()
    extra = (total / in_channels).expand(-1, in_channels - rgb, -1, -1)
    return torch.cat([weight * (rgb / in_channels), extra], 1)


def read_encoder_weights(path: str | Path, in_channels: int) -> EncoderWeights:
    """Read and check a torchvision-format ResNet-18 state dict (e.g. `resnet18-f37072fd.pth`):
    its keys and shapes must be ResNet-18's (`fc.*` is ignored). Raises EncoderWeightsError
    naming the file and what is wrong: unreadable or truncated, a pickle with code, another
    ResNet (ResNet-34's extra blocks, ResNet-50's bottlenecks), wrong shapes."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"{path}: no such file (--encoder-weights)")
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    expected = ResNet18Encoder(3).state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if extra:
        hint = " (a deeper ResNet such as ResNet-34 or ResNet-50?)" if any(k.startswith("layer") for k in extra) else ""
        raise EncoderWeightsError(
            f"{path}: not a ResNet-18 state dict: {len(extra)} key(s) a ResNet-18 does not have, "
            f"e.g. {', '.join(extra[:3])}{hint}"
        )
    if missing:
        raise EncoderWeightsError(
            f"{path}: not a whole ResNet-18 state dict: {len(missing)} of its {len(expected)} encoder keys are "
            f"missing, e.g. {', '.join(missing[:3])}"
        )
    for key, want in expected.items():
        if state[key].shape != want.shape:
            raise EncoderWeightsError(
                f"{path}: {key} has shape {tuple(state[key].shape)}, a ResNet-18's is {tuple(want.shape)}"
            )
        if state[key].is_floating_point() and not torch.isfinite(state[key]).all():
            raise EncoderWeightsError(f"{path}: {key} holds NaN or infinite values")
    state = {k: state[k].to(want.dtype) for k, want in expected.items()}  # num_batches_tracked: int64
    state["conv1.weight"] = _fit_stem(state["conv1.weight"], in_channels)
    return EncoderWeights(str(path), sha256_file(Path(path)), state)


def load_encoder(generator: ResNetUNetGenerator, weights: EncoderWeights) -> None:
    """Copy checked weights into G's encoder (after init_weights, which they replace)."""
    width = generator.encoder.conv1.out_channels
    if width != 64:
        raise EncoderWeightsError(f"{weights.path}: ResNet-18 weights need g_channels 64 (this generator's is {width})")
    generator.encoder.load_state_dict(weights.state)
