"""The networks of appendix 6.1: parameter counts and cost at paper settings, then tiny models for
shapes, layer placement (dropout, norms) and the PatchGAN receptive fields."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pix2pix.config import TrainConfig, parse_objective, unet_depth_for_size
from pix2pix.models.networks import (
    SMALL_MAP_PIXELS,
    Down,
    PatchDiscriminator,
    ResnetBlock,
    ResnetGenerator,
    UNetGenerator,
    Up,
    build_networks,
    count_parameters,
    init_weights,
)
from pix2pix.training.train import train_step

# --- fidelity at paper settings (256 px, ngf = ndf = 64) ---


def test_paper_unet_generator_parameter_count() -> None:
    # 3 -> 3, C64-C128-C256-C512 x5 encoder, mirrored decoder with skips, batch norm,
    # no norm on the 1x1 bottleneck (the paper's errata)
    assert count_parameters(UNetGenerator()) == 54_413_955


def test_innermost_norm_adds_one_batch_norm_of_512() -> None:
    # as published (before the errata): BN on the bottleneck, 512 scales + 512 shifts
    assert count_parameters(UNetGenerator(innermost_norm=True)) - count_parameters(UNetGenerator()) == 1024


def test_paper_70x70_patch_discriminator_parameter_count() -> None:
    # C64-C128-C256-C512 + 1-channel conv on the (input, output) pair: 3 + 3 channels
    assert count_parameters(PatchDiscriminator(6)) == 2_768_705


def test_paper_training_iteration_flops() -> None:
    """One G + D iteration at 256 px, batch 1: G forward, D step on a real and a fake pair,
    G step through D. Counted by torch's FLOP counter (a multiply-add is 2 FLOP)."""
    torch.manual_seed(0)
    cfg = TrainConfig()
    generator, discriminator = build_networks(cfg)
    assert discriminator is not None
    opt_g = torch.optim.Adam(generator.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2))
    real_a, real_b = torch.randn(2, 1, 3, 256, 256)

    with FlopCounterMode(display=False) as counter:
        generator(real_a)
    assert round(counter.get_total_flops() / 1e9, 1) == 12.1

    with FlopCounterMode(display=False) as counter:
        stats = train_step(
            generator,
            discriminator,
            opt_g,
            opt_d,
            real_a,
            real_b,
            parse_objective("l1+cgan"),
            cfg.loss.lambda_l1,
            "vanilla",
        )
    assert round(counter.get_total_flops() / 1e9, 1) == 86.9
    assert {"d_real", "d_fake", "g_gan", "g_l1"} <= set(stats)


# --- U-Net shapes and structure (tiny models) ---


def test_unet_keeps_spatial_shape() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    out = UNetGenerator(3, 3, base_channels=4, depth=5)(x)
    assert out.shape == x.shape
    assert out.abs().max() <= 1  # tanh output: the image range


def test_unet_maps_one_channel_to_two() -> None:
    torch.manual_seed(0)
    out = UNetGenerator(1, 2, base_channels=4, depth=5)(torch.randn(1, 1, 32, 32))
    assert out.shape == (1, 2, 32, 32)


def test_unet_sides_must_be_multiples_of_two_to_the_depth() -> None:
    G = UNetGenerator(3, 3, base_channels=4, depth=5)
    assert G.size_multiple == 32
    with pytest.raises(RuntimeError):
        G(torch.randn(1, 3, 48, 48))  # 48 / 32 is not whole: the skips' sizes disagree


def test_encoder_decoder_without_skips() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    with_skips = UNetGenerator(3, 3, base_channels=4, depth=5)
    without = UNetGenerator(3, 3, base_channels=4, depth=5, skips=False)
    assert without(x).shape == x.shape
    assert count_parameters(without) < count_parameters(with_skips)


def test_without_skips_everything_passes_the_bottleneck() -> None:
    """Blank the 1x1 bottleneck: the encoder-decoder's output no longer depends on the input,
    the U-Net's still does, through its skips (section 3.2.1, Figure 3)."""
    torch.manual_seed(0)
    x1, x2 = torch.randn(2, 1, 3, 32, 32)
    for skips in (True, False):
        G = UNetGenerator(3, 3, base_channels=4, depth=5, skips=skips).eval()
        G.encoder[-1].register_forward_hook(lambda module, inputs, output: torch.zeros_like(output))
        assert torch.equal(G(x1), G(x2)) is not skips


def test_unet_depth_for_size() -> None:
    assert unet_depth_for_size(256) == 8
    assert unet_depth_for_size(128) == 7
    assert unet_depth_for_size(32) == 5
    for bad in (0, 1, 100, 255, 286):
        with pytest.raises(ValueError, match=str(bad)):
            unet_depth_for_size(bad)


def _dropout_levels(G: UNetGenerator) -> list[int]:
    return [j for j, level in enumerate(G.decoder) if any(isinstance(m, nn.Dropout) for m in level.modules())]


def test_dropout_on_the_first_three_decoder_levels() -> None:
    # CD512-CD512-CD512-C512-...: the paper's only noise z (section 3.1)
    G = UNetGenerator(base_channels=4, depth=8)
    assert sum(isinstance(m, nn.Dropout) for m in G.modules()) == 3
    assert _dropout_levels(G) == [0, 1, 2]
    assert all(m.p == 0.5 for m in G.modules() if isinstance(m, nn.Dropout))


def test_dropout_shifted_one_level_as_in_the_pytorch_code() -> None:
    G = UNetGenerator(base_channels=4, depth=8, dropout_first_level=1)
    assert _dropout_levels(G) == [1, 2, 3]


def test_no_dropout_when_disabled() -> None:
    G = UNetGenerator(base_channels=4, depth=8, dropout=0.0)
    assert not any(isinstance(m, nn.Dropout) for m in G.modules())


def test_dropout_is_noise_in_train_mode_only() -> None:
    torch.manual_seed(0)
    G = UNetGenerator(3, 3, base_channels=4, depth=5, norm="none")
    x = torch.randn(1, 3, 32, 32)
    assert not torch.equal(G(x), G(x))
    G.eval()
    assert torch.equal(G(x), G(x))


def _has(module: nn.Module, kind: type) -> bool:
    return any(isinstance(m, kind) for m in module.modules())


def test_bottleneck_has_no_norm_by_default() -> None:
    G = UNetGenerator(base_channels=4, depth=8)
    assert not _has(G.encoder[-1], nn.BatchNorm2d)
    assert all(_has(level, nn.BatchNorm2d) for level in G.encoder[1:-1])
    assert _has(UNetGenerator(base_channels=4, depth=8, innermost_norm=True).encoder[-1], nn.BatchNorm2d)


@pytest.mark.parametrize(("norm", "kind"), [("batch", nn.BatchNorm2d), ("instance", nn.InstanceNorm2d)])
def test_first_encoder_level_has_no_norm(norm: str, kind: type) -> None:
    G = UNetGenerator(base_channels=4, depth=8, norm=norm)
    assert not _has(G.encoder[0], kind)
    assert _has(G.encoder[1], kind)


def test_batch_norm_convs_have_no_bias() -> None:
    # BN's shift replaces the conv bias; other norms keep it (the counts above depend on this)
    def biased(G: nn.Module) -> list[bool]:
        return [m.bias is not None for m in G.encoder[1].modules() if isinstance(m, nn.Conv2d)]

    assert biased(UNetGenerator(base_channels=4, depth=5)) == [False]
    assert biased(UNetGenerator(base_channels=4, depth=5, norm="instance")) == [True]


# --- PatchGAN discriminator ---


@pytest.mark.parametrize(("receptive_field", "size"), [(1, 9), (16, 48), (70, 128), (286, 352)])
def test_patch_discriminator_receptive_field(receptive_field: int, size: int) -> None:
    """The input pixels that one output logit depends on form exactly an rf x rf square
    (section 4.4, Table 3). Eval mode keeps BN per-pixel (no batch statistics mixing pixels)."""
    torch.manual_seed(0)
    D = PatchDiscriminator(3, base_channels=2, receptive_field=receptive_field).double()
    init_weights(D)
    D.eval()
    x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    logits = D(x)
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    seen = x.grad.abs().sum(dim=(0, 1)) != 0  # (size, size)
    rows = seen.any(dim=1).nonzero().flatten()
    cols = seen.any(dim=0).nonzero().flatten()
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    # the window lies inside the input, so padding did not clip it
    assert top > 0 and left > 0 and bottom < size - 1 and right < size - 1
    assert (bottom - top + 1, right - left + 1) == (receptive_field, receptive_field)
    assert seen[top : bottom + 1, left : right + 1].all()


def test_70x70_patch_discriminator_on_256_gives_30x30_logits() -> None:
    D = PatchDiscriminator(6, base_channels=2)
    assert D(torch.randn(1, 6, 256, 256)).shape == (1, 1, 30, 30)


def test_pixelgan_logits_have_the_input_size() -> None:
    D = PatchDiscriminator(6, base_channels=2, receptive_field=1)
    assert D(torch.randn(2, 6, 20, 24)).shape == (2, 1, 20, 24)
    assert all(m.kernel_size == (1, 1) for m in D.modules() if isinstance(m, nn.Conv2d))


def test_unsupported_receptive_field_raises() -> None:
    with pytest.raises(ValueError, match="receptive field 64") as err:
        PatchDiscriminator(6, receptive_field=64)
    assert all(str(rf) in str(err.value) for rf in (1, 16, 70, 286))


# --- norms, ResNet generator, initialisation ---


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_other_norms_build_and_run(norm: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    G = UNetGenerator(3, 3, base_channels=4, depth=5, norm=norm)
    D = PatchDiscriminator(6, base_channels=4, norm=norm)
    assert G(x).shape == x.shape
    assert D(torch.cat([x, G(x)], dim=1)).shape == (2, 1, 2, 2)
    assert not _has(G, nn.BatchNorm2d) and not _has(D, nn.BatchNorm2d)


def test_unknown_norm_names_the_choices() -> None:
    with pytest.raises(ValueError, match="group") as err:
        UNetGenerator(base_channels=4, depth=5, norm="group")
    assert all(name in str(err.value) for name in ("batch", "instance", "none"))
    with pytest.raises(ValueError, match="group"):
        PatchDiscriminator(6, base_channels=4, norm="group")


@pytest.mark.parametrize("blocks", [6, 9])
def test_resnet_generator_keeps_shape(blocks: int) -> None:
    torch.manual_seed(0)
    G = ResnetGenerator(3, 3, base_channels=4, blocks=blocks)
    assert sum(isinstance(m, ResnetBlock) for m in G.modules()) == blocks
    x = torch.randn(2, 3, 32, 32)
    out = G(x)
    assert out.shape == x.shape
    assert out.abs().max() <= 1


def test_init_weights_normal_0_02() -> None:
    torch.manual_seed(0)
    G = UNetGenerator(3, 3, base_channels=16, depth=5)
    init_weights(G)
    convs = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    big = [m for m in convs if m.weight.numel() >= 8192]
    assert len(big) >= 5
    for m in big:
        assert 0.018 < m.weight.std().item() < 0.022
        assert abs(m.weight.mean().item()) < 0.002
    assert all(torch.all(m.bias == 0) for m in convs if m.bias is not None)
    scales = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 0.01 and 0.01 < scales.std().item() < 0.03
    # PyTorch's default (Kaiming uniform) is far wider for these layers: init really replaced it
    fresh = UNetGenerator(3, 3, base_channels=16, depth=5)
    assert fresh.encoder[1][1].weight.std().item() > 0.03


# --- the small-map CPU path of the U-Net's 4x4 stride-2 layers (networks.Down / Up) ---


@pytest.mark.parametrize("side", [1, 2, 4, 16, 32])
@pytest.mark.parametrize("bias", [True, False])
def test_up_and_down_equal_torch_layers_in_value_and_gradients(side: int, bias: bool) -> None:
    # sides up to 16 take the matmul path (16 x 16 = SMALL_MAP_PIXELS), 32 the oneDNN one
    torch.manual_seed(0)
    for ours_type, torch_type, c_in, c_out in ((Up, nn.ConvTranspose2d, 24, 10), (Down, nn.Conv2d, 10, 24)):
        if ours_type is Down and side == 1:
            continue  # a stride-2 conv needs at least 2 x 2
        ours = ours_type(c_in, c_out, bias=bias)
        plain = torch_type(c_in, c_out, 4, stride=2, padding=1, bias=bias)
        plain.load_state_dict(ours.state_dict())  # the same keys and shapes
        x = torch.randn(3, c_in, side, side, dtype=torch.float64, requires_grad=True)
        ours.double(), plain.double()
        y_ours, y_plain = ours(x), plain(x)
        assert y_ours.shape == y_plain.shape
        torch.testing.assert_close(y_ours, y_plain, rtol=1e-10, atol=1e-10)
        upstream = torch.randn_like(y_plain)
        g_ours = torch.autograd.grad(y_ours, [x, *ours.parameters()], upstream)
        g_plain = torch.autograd.grad(y_plain, [x, *plain.parameters()], upstream)
        for a, b in zip(g_ours, g_plain, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_small_map_path_is_taken_only_up_to_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    fold = torch.nn.functional.fold
    monkeypatch.setattr(torch.nn.functional, "fold", lambda x, *a, **k: calls.append(x.shape) or fold(x, *a, **k))
    up = Up(8, 6, bias=True)
    side = int(SMALL_MAP_PIXELS**0.5)
    up(torch.randn(1, 8, side, side))
    assert len(calls) == 1
    up(torch.randn(1, 8, side * 2, side * 2))
    assert len(calls) == 1  # a larger map stays with the convolution kernels
    head = Up(8, 3, bias=True)  # ... except for an image head (few output channels)
    head(torch.randn(1, 8, side * 2, side * 2))
    assert len(calls) == 2


def test_image_head_on_a_large_map_equals_torch() -> None:
    torch.manual_seed(0)
    ours = Up(16, 3, bias=True).double()
    plain = nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1).double()
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 16, 40, 24, dtype=torch.float64, requires_grad=True)  # 960 px > SMALL_MAP_PIXELS
    torch.testing.assert_close(ours(x), plain(x), rtol=1e-10, atol=1e-10)
    up = torch.randn(2, 3, 80, 48, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(ours(x), [x, *ours.parameters()], up),
        torch.autograd.grad(plain(x), [x, *plain.parameters()], up),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
