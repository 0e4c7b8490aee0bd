"""`pix2pix import-reference`: generators of the reference PyTorch code give the same outputs here.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix) cannot be installed, so its generators are
re-created below from its public source, just enough for the same state-dict keys and the same
forward pass (including its in-place activations), and filled with random weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from pix2pix import Pix2Pix
from pix2pix.cli import main
from pix2pix.hub.reference import ReferenceImportError, convert_reference, load_reference_state

# --- a minimal re-creation of the reference's generators ---------------------------------------


def _ref_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    if norm == "none":  # the reference's get_norm_layer("none"): Identity, and no conv biases
        return nn.Identity()
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class RefUnetBlock(nn.Module):
    """One UnetSkipConnectionBlock: down, [the nested block], up; returns cat([input, up])."""

    def __init__(self, outer, inner, input_nc=None, submodule=None, outermost=False, innermost=False, **kw):
        super().__init__()
        norm, use_dropout = kw["norm"], kw.get("use_dropout", False)
        bias = norm == "instance"
        self.outermost = outermost
        down = nn.Conv2d(input_nc or outer, inner, 4, 2, 1, bias=bias)
        if outermost:
            layers = [down, submodule, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            up = nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, _ref_norm(norm, outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=bias)
            layers = [nn.LeakyReLU(0.2, True), down, _ref_norm(norm, inner), submodule]
            layers += [nn.ReLU(True), up, _ref_norm(norm, outer)] + ([nn.Dropout(0.5)] if use_dropout else [])
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class RefUnet(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf, norm, use_dropout=True):
        super().__init__()
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = RefUnetBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = RefUnetBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = RefUnetBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = RefUnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


class RefResnetBlock(nn.Module):
    def __init__(self, dim, norm, use_dropout):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _ref_norm(norm, dim), nn.ReLU(True)]
        layers += [nn.Dropout(0.5)] if use_dropout else []
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), _ref_norm(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnet(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, norm, n_blocks, use_dropout=True):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=bias), _ref_norm(norm, ngf), nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=bias), _ref_norm(norm, ngf * mult * 2)]
            layers += [nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4, norm, use_dropout) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=bias)]
            layers += [_ref_norm(norm, ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def reference_generator(arch: str, norm: str, ngf: int = 8, in_c: int = 3, out_c: int = 3, dropout: bool = True):
    """A reference generator with random weights and non-trivial batch-norm running statistics."""
    torch.manual_seed(0)
    if arch.startswith("unet"):
        net = RefUnet(in_c, out_c, {"unet_256": 8, "unet_128": 7}[arch], ngf, norm, dropout)
    else:
        net = RefResnet(in_c, out_c, ngf, norm, {"resnet_9blocks": 9, "resnet_6blocks": 6}[arch], dropout)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
            if norm == "none" and p.dim() == 4:  # no norm to keep activations O(1): std 1/sqrt(fan-in)
                p.mul_(1.0 / (0.2 * p[0].numel() ** 0.5))
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.momentum = None  # running statistics = the average over the calibration batches
        net.train()
        side = 128 if arch == "unet_128" else 256 if arch == "unet_256" else 32
        for _ in range(2):  # statistics of real activations keep them O(1), as in a trained net
            net(torch.rand(2, in_c, side, side) * 2 - 1)
        for m in norms:  # ... and not exactly the test batches' own
            m.running_mean.add_(torch.randn_like(m.running_mean) * 0.1 * m.running_var.sqrt())
            m.running_var.mul_(torch.empty_like(m.running_var).uniform_(0.7, 1.4))
    return net.eval()


def _convert(tmp_path: Path, net: nn.Module, arch: str, norm: str, *flags: str, state=None) -> Pix2Pix:
    tmp_path.mkdir(parents=True, exist_ok=True)
    pth = tmp_path / "latest_net_G.pth"
    torch.save(net.state_dict() if state is None else state, pth)
    assert main(["import-reference", str(pth), "--arch", arch, "--norm", norm, *flags, str(tmp_path / "model")]) == 0
    return Pix2Pix.load(tmp_path / "model")


CASES = [  # (arch, norm, input side, ngf, in -> out channels)
    ("unet_128", "batch", 128, 8, 3, 3),
    ("unet_128", "instance", 128, 8, 1, 3),
    ("unet_256", "batch", 256, 8, 3, 2),
    ("unet_256", "instance", 256, 4, 3, 3),
    ("resnet_6blocks", "batch", 36, 8, 3, 3),
    ("resnet_6blocks", "instance", 40, 4, 3, 1),
    ("resnet_9blocks", "batch", 32, 4, 1, 3),
    ("resnet_9blocks", "instance", 32, 8, 3, 3),
    # norm none: the reference's models have no conv biases at all (ours keep them)
    ("unet_128", "none", 128, 4, 3, 3),
    ("resnet_6blocks", "none", 32, 4, 3, 3),
]


@pytest.mark.parametrize("arch, norm, side, ngf, in_c, out_c", CASES)
def test_converted_model_gives_the_reference_outputs(tmp_path, arch, norm, side, ngf, in_c, out_c) -> None:
    net = reference_generator(arch, norm, ngf, in_c, out_c)
    model = _convert(tmp_path, net, arch, norm, "--direction", "BtoA")

    g = model.config.generator
    assert (g["base_channels"], g["in_channels"], g["out_channels"]) == (ngf, in_c, out_c)  # read from weights
    assert model.config.direction == "BtoA" and model.input_half == "right"
    x = torch.rand(2, in_c, side, side + 4 * (arch.startswith("resnet"))) * 2 - 1
    with torch.no_grad():
        expected = net(x.clone())  # clone: the reference's in-place activations may write to x
    torch.testing.assert_close(model.translate(x, mode="eval"), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch, dropout_levels", [("unet_256", 3), ("unet_128", 2)])
def test_paper_mode_noise_matches_the_reference_dropout(tmp_path, arch: str, dropout_levels: int) -> None:
    """Dropout sits on the same layers and draws the same masks: with one seed, the paper's
    stochastic inference (train mode, batch statistics) gives the reference's output."""
    net = reference_generator(arch, "batch", ngf=4)
    model = _convert(tmp_path, net, arch, "batch")
    g = model.config.generator
    assert (g["dropout"], g["dropout_first_level"], g["dropout_levels"]) == (0.5, 1, dropout_levels)
    side = 256 if arch == "unet_256" else 128
    x = torch.rand(1, 3, side, side) * 2 - 1
    net.train()
    torch.manual_seed(3)
    with torch.no_grad():
        expected = net(x.clone())
    torch.testing.assert_close(model.translate(x, mode="paper", seed=3), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model.translate(x, mode="paper", seed=4), expected, atol=1e-3)


def test_no_dropout_unet_and_dropout_read_from_resnet_weights(tmp_path: Path) -> None:
    net = reference_generator("unet_128", "instance", ngf=4, dropout=False)
    model = _convert(tmp_path / "u", net, "unet_128", "instance", "--no-dropout")
    assert model.config.generator["dropout"] == 0.0
    assert not any(isinstance(m, nn.Dropout) for m in model.generator.modules())

    net = reference_generator("resnet_6blocks", "instance", ngf=4, dropout=False)  # CycleGAN's default
    model = _convert(tmp_path / "r", net, "resnet_6blocks", "instance")
    assert model.config.generator["dropout"] == 0.0
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x.clone())
    torch.testing.assert_close(model.translate(x, mode="eval"), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ReferenceImportError, match="without dropout"):
        convert_reference(net.state_dict(), "resnet_6blocks", "instance", dropout=True)


def test_dataparallel_prefixes_old_instance_stats_and_missing_batch_counters(tmp_path: Path) -> None:
    net = reference_generator("unet_128", "instance", ngf=4)
    state = {"module." + k: v for k, v in net.state_dict().items()}  # saved from DataParallel
    # files from when the reference tracked instance-norm statistics; it drops them on load
    state["module.model.model.1.model.2.running_mean"] = torch.zeros(8)
    state["module.model.model.1.model.2.running_var"] = torch.ones(8)
    state["module.model.model.1.model.2.num_batches_tracked"] = torch.tensor(3)
    model = _convert(tmp_path / "a", net, "unet_128", "instance", state=state)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        expected = net(x.clone())
    torch.testing.assert_close(model.translate(x, mode="eval"), expected, atol=1e-5, rtol=1e-5)

    net = reference_generator("resnet_6blocks", "batch", ngf=4)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}  # torch < 0.4
    model = _convert(tmp_path / "b", net, "resnet_6blocks", "batch", state=state)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = net(x.clone())
    torch.testing.assert_close(model.translate(x, mode="eval"), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "arch, norm, flags, pattern",
    [
        ("unet_128", "batch", ["--arch", "unet_256", "--norm", "batch"], r"look like --arch unet_128 --norm batch"),
        ("unet_128", "batch", ["--arch", "unet_128", "--norm", "instance"], r"look like --arch unet_128 --norm batch"),
        ("resnet_9blocks", "instance", ["--arch", "resnet_6blocks", "--norm", "instance"], r"resnet_9blocks"),
        ("resnet_6blocks", "batch", ["--arch", "unet_256", "--norm", "batch"], r"look like --arch resnet_6blocks"),
    ],
)
def test_arch_or_norm_mismatch_lists_missing_and_unexpected_keys(tmp_path, capsys, arch, norm, flags, pattern):
    pth = tmp_path / "latest_net_G.pth"
    torch.save(reference_generator(arch, norm, ngf=4).state_dict(), pth)
    assert main(["import-reference", str(pth), *flags, str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err
    assert str(pth) in err and "do not match" in err and "keys (" in err
    assert ("missing keys" in err) or ("unexpected keys" in err)
    assert re.search(pattern, err), err
    assert not (tmp_path / "model").exists()


def test_files_that_are_not_state_dicts_are_refused_by_name(tmp_path: Path, capsys) -> None:
    whole = tmp_path / "whole_module.pth"
    torch.save(RefResnetBlock(4, "batch", False), whole)  # a pickled module: never unpickled here
    listing = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listing)
    training = tmp_path / "training.pth"
    torch.save({"epoch": 3, "netG": {"w": torch.zeros(1)}}, training)
    for path, reason in [(whole, "weights_only"), (listing, "holds a list"), (training, "not a tensor")]:
        with pytest.raises(ReferenceImportError, match=reason) as info:
            load_reference_state(path)
        assert str(path) in str(info.value)
    assert main(["import-reference", str(whole), "--arch", "unet_256", "--norm", "batch", str(tmp_path / "m")]) == 2
    assert "weights_only" in capsys.readouterr().err


def test_existing_model_folder_needs_overwrite(tmp_path: Path, capsys) -> None:
    net = reference_generator("resnet_6blocks", "instance", ngf=4)
    _convert(tmp_path, net, "resnet_6blocks", "instance")
    config_before = json.loads((tmp_path / "model" / "config.json").read_text())
    args = ["import-reference", str(tmp_path / "latest_net_G.pth"), "--arch", "resnet_6blocks", "--norm", "instance"]
    assert main([*args, "--direction", "BtoA", str(tmp_path / "model")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert json.loads((tmp_path / "model" / "config.json").read_text()) == config_before
    assert main([*args, "--direction", "BtoA", "--overwrite", str(tmp_path / "model")]) == 0
    assert json.loads((tmp_path / "model" / "config.json").read_text())["direction"] == "BtoA"
