"""The paper's networks (appendix 6.1): U-Net / encoder-decoder generator, PatchGAN discriminator.

Also the ResNet generator of the reference PyTorch code, which many users train with.

Notation: Ck = Conv-Norm-ReLU with k filters, CDk = Conv-Norm-Dropout(0.5)-ReLU; every conv is
4x4 with stride 2; encoder and discriminator ReLUs are leaky (slope 0.2), decoder ReLUs are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FIXED_SIZE_MULTIPLES
from .norms import OneValueBatchNorm, norm_layer
from .resnet_unet import ResNetUNetGenerator

if TYPE_CHECKING:
    from ..config import TrainConfig


# Receptive field of the PatchGAN (section 4.4, Table 3) -> number of stride-2 conv layers
# of the reference NLayerDiscriminator. 1 is the PixelGAN (1x1 convs), a different net.
PATCH_LAYERS = {16: 1, 34: 2, 70: 3, 142: 4, 286: 5}
RECEPTIVE_FIELDS = (1, *PATCH_LAYERS)


def _conv_bias(norm: str, conv_bias: bool | None = None) -> bool:
    # A conv followed by BatchNorm needs no bias (BN's shift replaces it): ours have none with
    # batch norm and keep one with instance norm or none. The reference PyTorch code keeps the
    # bias only with instance norm (define_G / define_D: use_bias = norm_layer == InstanceNorm2d),
    # so its `none` models have no conv biases at all; conv_bias=False builds that layout
    # (import-reference --norm none). The parameter counts of the tests depend on this rule.
    return norm != "batch" if conv_bias is None else conv_bias


# At or below this many pixels (16x16) per input map, the CPU runs the U-Net's 4x4 stride-2
# convolutions as one matrix product (below). There a layer has 512-1024 channels and so 4-8M
# weights but only 1-256 positions, and oneDNN's convolution kernels, made for large maps, are
# slow on such shapes; from 32x32 up they are faster, so larger maps stay with them. GPUs keep
# cuDNN. The measurements behind both thresholds: benchmarks/RESULTS.md (small maps) and
# benchmarks/results/layers_cpu.md.
SMALL_MAP_PIXELS = 256
# The same holds for the head at any size: a transposed convolution to 1-4 output channels (an
# image) is faster as a matrix product.
FEW_OUTPUT_CHANNELS = 4


def _matmul_path(x: torch.Tensor, any_size: bool = False) -> bool:
    """Whether to run a 4x4 stride-2 layer on `x` as a matrix product: on the CPU, for maps of
    at most SMALL_MAP_PIXELS (or any map with `any_size`), and never while exporting."""
    if x.device.type != "cpu" or x.dim() != 4:
        return False
    if x.shape[-2] * x.shape[-1] > SMALL_MAP_PIXELS and not any_size:
        return False
    # ONNX export records the standard operators, whatever the size
    return not (torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


class Down(nn.Conv2d):
    """The U-Net's 4x4 stride-2 padding-1 convolution. Same weights and state-dict keys as
    nn.Conv2d; on small CPU maps the same sum is computed as im2col + one matrix product."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _matmul_path(x):
            return super().forward(x)
        b, _, h, w = x.shape  # (B, C_in, h, w) -> (B, C_out, h/2, w/2)
        columns = F.unfold(x, 4, padding=1, stride=2)  # (B, C_in * 16, h/2 * w/2)
        y = torch.matmul(self.weight.reshape(self.out_channels, -1), columns)
        y = y.reshape(b, self.out_channels, h // 2, w // 2)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class Up(nn.ConvTranspose2d):
    """The U-Net's 4x4 stride-2 padding-1 transposed convolution. Same weights and state-dict
    keys as nn.ConvTranspose2d; on small CPU maps the same sum is computed as one matrix
    product followed by col2im (F.fold), which is what a transposed convolution is."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool) -> None:
        super().__init__(in_channels, out_channels, 4, stride=2, padding=1, bias=bias)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not _matmul_path(x, any_size=self.out_channels <= FEW_OUTPUT_CHANNELS):
            return super().forward(x, output_size)
        b, c_in, h, w = x.shape  # (B, C_in, h, w) -> (B, C_out, 2h, 2w)
        # weight (C_in, C_out, 4, 4): each input pixel scatters a C_out x 4 x 4 patch
        patches = torch.matmul(self.weight.reshape(c_in, -1).t(), x.reshape(b, c_in, h * w))
        y = F.fold(patches, (2 * h, 2 * w), 4, stride=2, padding=1)  # overlapping patches added
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


class UNetGenerator(nn.Module):
    """U-Net generator G (paper section 3.2.1, appendix 6.1.1); `ngf` in the paper is `base_channels`.

    Encoder C64-C128-C256-C512-C512-C512-C512-C512 at depth 8 (256 px); the decoder mirrors it
    and, with skips, concatenates encoder level i onto decoder level n-i. `skips=False` is the
    paper's encoder-decoder baseline (Table 2). Inputs must have sides divisible by 2**depth.

    Example:
        >>> G = UNetGenerator(3, 3, base_channels=4, depth=5)
        >>> G(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        depth: int = 8,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_levels: int = 3,
        dropout_first_level: int = 0,
        skips: bool = True,
        innermost_norm: bool = False,
        output: str = "tanh",
        conv_bias: bool | None = None,
    ) -> None:
        """
        Args:
            output: "tanh" for images in [-1, 1] (the paper's G); "logits" leaves the head
                linear, for the FCN-score segmenter (evaluation/segmenter.py), one channel per class.
            dropout_levels: how many decoder levels (counted from the bottleneck) use dropout;
                the paper uses 3 (CD512 x3), its only source of noise z.
            dropout_first_level: 0 puts dropout on the first decoder levels as in the paper and
                its Torch code; 1 shifts it one level up, as the PyTorch reference code does.
            innermost_norm: the paper as published normalises the 1x1 bottleneck; its errata
                (and the public code) remove that norm because with batch 1 it zeroes the
                activations. False is the errata; True reproduces that zeroing at batch 1
                (OneValueBatchNorm) instead of failing.
            conv_bias: None for our rule (a bias unless batch norm follows); False for the
                reference code's `none` models, which have none (see _conv_bias).
        """
        super().__init__()
        if depth < 2:
            raise ValueError(f"U-Net depth must be >= 2, got {depth}")
        if output not in ("tanh", "logits"):
            raise ValueError(f"U-Net output must be tanh or logits, got {output!r}")
        self.depth = depth
        self.skips = skips
        bias = _conv_bias(norm, conv_bias)
        # channels[i] = output channels of encoder level i: 64, 128, 256, 512, 512, ... (x8 cap)
        channels = [base_channels * min(2**i, 8) for i in range(depth)]

        self.encoder = nn.ModuleList()
        for i in range(depth):
            c_in = in_channels if i == 0 else channels[i - 1]
            conv = Down(c_in, channels[i], bias)
            if i == 0:
                # no norm on the first C64 (appendix 6.1.1); its activation comes with level 1
                layers = [conv]
            elif i == depth - 1 and not innermost_norm:
                layers = [nn.LeakyReLU(0.2), conv]  # 1x1 bottleneck: no norm (errata)
            elif i == depth - 1 and norm == "batch":
                layers = [nn.LeakyReLU(0.2), conv, OneValueBatchNorm(channels[i])]  # as first published
            else:
                layers = [nn.LeakyReLU(0.2), conv, norm_layer(norm, channels[i])]
            self.encoder.append(nn.Sequential(*layers))

        # Decoder level j (0 = bottleneck) maps to the size of encoder level depth-2-j.
        self.decoder = nn.ModuleList()
        for j in range(depth - 1):
            level = depth - 1 - j  # the encoder level this decoder input comes from
            c_in = channels[level] * (2 if skips and j > 0 else 1)
            c_out = channels[level - 1]
            layers = [
                nn.ReLU(),
                Up(c_in, c_out, bias),
                norm_layer(norm, c_out),
            ]
            if dropout > 0 and dropout_first_level <= j < dropout_first_level + dropout_levels:
                layers.append(nn.Dropout(dropout))
            self.decoder.append(nn.Sequential(*layers))
        c_in = channels[0] * (2 if skips else 1)
        self.head = nn.Sequential(
            nn.ReLU(),
            Up(c_in, out_channels, bias=True),
            # outputs in [-1, 1], the range the images are scaled to; or class scores
            nn.Tanh() if output == "tanh" else nn.Identity(),
        )

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C_in, H, W) with H, W divisible by 2**depth
        features = []
        for level in self.encoder:
            x = level(x)
            features.append(x)  # level i: (B, channels[i], H / 2**(i+1), W / 2**(i+1))
        for j, level in enumerate(self.decoder):
            if j > 0 and self.skips:
                # (B, 2C, h, w): U-Net skip from encoder level n-i (section 3.2.1)
                x = torch.cat([x, features[self.depth - 1 - j]], dim=1)
            x = level(x)
        if self.skips:
            x = torch.cat([x, features[0]], dim=1)
        return self.head(x)  # (B, C_out, H, W)


class ResnetBlock(nn.Module):
    """Two 3x3 convs with reflection padding and a residual connection (Johnson et al. 2016)."""

    def __init__(self, channels: int, norm: str, dropout: float, bias: bool | None = None) -> None:
        super().__init__()
        bias = _conv_bias(norm) if bias is None else bias
        layers = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            norm_layer(norm, channels),
            nn.ReLU(),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The reference code's ResNet generator (`resnet_6blocks`, `resnet_9blocks`).

    c7s1-64, d128, d256, n residual blocks, u128, u64, c7s1-out; sides must be multiples of 4.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        base_channels: int = 64,
        blocks: int = 9,
        norm: str = "batch",
        dropout: float = 0.5,
        conv_bias: bool | None = None,
    ) -> None:
        super().__init__()
        bias = _conv_bias(norm, conv_bias)
        c = base_channels
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, c, 7, bias=bias),
            norm_layer(norm, c),
            nn.ReLU(),
        ]
        for mult in (1, 2):  # two stride-2 downsamplings: (B, 4c, H/4, W/4)
            layers += [
                nn.Conv2d(c * mult, c * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_layer(norm, c * mult * 2),
                nn.ReLU(),
            ]
        layers += [ResnetBlock(c * 4, norm, dropout, bias) for _ in range(blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(c * mult, c * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                norm_layer(norm, c * mult // 2),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    size_multiple = FIXED_SIZE_MULTIPLES["resnet"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator D (section 3.2.2, appendix 6.1.2), chosen by receptive field.

    70 (default): C64-C128-C256-C512, then a conv to 1 channel; 16: C64-C128; 286 ("ImageGAN"):
    C64-C128-C256-C512-C512-C512; 1 ("PixelGAN"): C64-C128 with 1x1 convs. No norm on the first
    C64. The last two convs have stride 1 (as in the paper's code), which is what gives the
    stated receptive fields. Returns logits per patch, (B, 1, h, w); the sigmoid is in the loss.
    With `in_channels` = C_in + C_out it is conditional (sees input and output); with C_out only
    it is the unconditional "GAN" ablation (Table 1).

    Example:
        >>> D = PatchDiscriminator(6, base_channels=4, receptive_field=70)
        >>> D(torch.zeros(1, 6, 64, 64)).shape
        torch.Size([1, 1, 6, 6])
    """

    def __init__(
        self,
        in_channels: int = 6,
        base_channels: int = 64,
        receptive_field: int = 70,
        norm: str = "batch",
        leaky_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if receptive_field not in RECEPTIVE_FIELDS:
            raise ValueError(
                f"unsupported discriminator receptive field {receptive_field}; choose one of {list(RECEPTIVE_FIELDS)}"
            )
        self.receptive_field = receptive_field
        bias = _conv_bias(norm)
        c = base_channels
        if receptive_field == 1:
            layers = [
                nn.Conv2d(in_channels, c, 1),
                nn.LeakyReLU(leaky_slope),
                nn.Conv2d(c, 2 * c, 1, bias=bias),
                norm_layer(norm, 2 * c),
                nn.LeakyReLU(leaky_slope),
                nn.Conv2d(2 * c, 1, 1, bias=bias),
            ]
        else:
            n_layers = PATCH_LAYERS[receptive_field]
            layers = [nn.Conv2d(in_channels, c, 4, stride=2, padding=1), nn.LeakyReLU(leaky_slope)]
            c_prev = c
            for n in range(1, n_layers + 1):
                c_next = c * min(2**n, 8)
                stride = 2 if n < n_layers else 1
                layers += [
                    nn.Conv2d(c_prev, c_next, 4, stride=stride, padding=1, bias=bias),
                    norm_layer(norm, c_next),
                    nn.LeakyReLU(leaky_slope),
                ]
                c_prev = c_next
            layers.append(nn.Conv2d(c_prev, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """Weights from N(0, 0.02) (section 3.3); norm scales from N(1, 0.02), biases zero."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- building the networks of a run --------------------------------------------------------------


def dropout_levels(depth: int, placement: str) -> dict[str, int]:
    """UNetGenerator's dropout arguments for a placement. "paper": its defaults, the 3 decoder
    levels nearest the bottleneck (CD512 x3, appendix 6.1.1, and the paper's Lua code).
    "reference": the PyTorch reference code's, from the second level on, depth - 5 of them
    (3 at 256 px as its unet_256, 2 at 128 px as its unet_128)."""
    if placement == "paper":
        return {}
    if placement == "reference":
        return {"dropout_levels": max(0, depth - 5), "dropout_first_level": 1}
    raise ValueError(f"dropout placement {placement!r}: choose paper or reference")


GENERATOR_CLASSES: dict[str, type[nn.Module]] = {
    "unet": UNetGenerator,
    "resnet": ResnetGenerator,
    "resnet18-unet": ResNetUNetGenerator,
}


def generator_settings(cfg: TrainConfig) -> tuple[str, dict]:
    """(architecture, the generator class's arguments) of a run: what a model folder records."""
    g, data = cfg.generator, cfg.data
    settings: dict = {
        "in_channels": data.in_channels,
        "out_channels": data.out_channels,
        "base_channels": g.channels,
        "norm": g.norm,
    }
    if g.architecture == "resnet18-unet":  # ResNet-18's depth, no dropout (no noise z, as seed 003)
        return g.architecture, settings
    settings["dropout"] = g.dropout
    if g.architecture == "unet":
        settings.update(depth=cfg.depth, skips=g.skips, innermost_norm=g.innermost_norm)
        settings.update(dropout_levels(cfg.depth, g.dropout_placement))
    else:
        settings.update(blocks=g.resnet_blocks)
    return g.architecture, settings


def build_generator(architecture: str, settings: dict) -> nn.Module:
    """G of `architecture` ("unet" or "resnet") from its arguments, not yet initialised."""
    if architecture not in GENERATOR_CLASSES:
        raise ValueError(f"architecture {architecture!r}: choose one of {', '.join(GENERATOR_CLASSES)}")
    return GENERATOR_CLASSES[architecture](**settings)


def build_networks(cfg: TrainConfig) -> tuple[nn.Module, nn.Module | None]:
    """G and, if the objective has an adversarial term, D; both initialised N(0, 0.02) from
    torch's random stream (seed it first)."""
    generator = build_generator(*generator_settings(cfg))
    init_weights(generator)
    objective = cfg.loss.terms
    if objective.adversarial is None:
        return generator, None  # "L1 only" trains no discriminator at all
    # cGAN: D sees input and output concatenated on channels; GAN: the output only (Table 1)
    d_in = cfg.data.out_channels + (cfg.data.in_channels if objective.conditional else 0)
    d = cfg.discriminator
    discriminator = PatchDiscriminator(d_in, d.channels, d.receptive_field, cfg.generator.norm, d.leaky_slope)
    init_weights(discriminator)
    return generator, discriminator
