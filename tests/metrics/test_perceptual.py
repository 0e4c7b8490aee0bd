"""Feature networks for FID / KID / LPIPS (pix2pix.features): the weight-file checks and their
messages, the architectures against the layouts of the standard files, and a round trip through
`perceptual_scores` with randomly initialised networks saved under the standard names and
registered, for the test only, under their own hashes. No network access, CPU only."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from pix2pix.metrics.perceptual import (
    ALEXNET,
    FID_INCEPTION,
    LPIPS,
    LPIPS_ALEX_LINEAR,
    LPIPS_MIN_SIZE,
    METRIC_WEIGHTS,
    METRICS,
    WEIGHT_FILES,
    AlexNet,
    FIDInceptionV3,
    LPIPSLinearHeads,
    WeightsMissingError,
    _load_state_dict,
    _perceptual_scores,
    _tf_avg_pool,
    _verify,
    default_weights_dir,
    find_weights,
    packaged_copy,
    perceptual_scores,
)


def _images(seed: int, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((h, w, 3)) for h, w in shapes]


# --- the registry and find_weights --------------------------------------------------------------


def test_registry_is_consistent_with_the_names_and_urls():
    for spec in WEIGHT_FILES.values():
        assert re.fullmatch(r"[0-9a-f]{8,64}", spec.sha256), spec.name
        assert spec.url.rsplit("/", 1)[1] == spec.name
        prefix = re.search(r"-([0-9a-f]{8})\.pth$", spec.name)  # torch.hub: the SHA-256's first digits
        if prefix:
            assert spec.sha256.startswith(prefix.group(1)), spec.name
    assert {name for names in METRIC_WEIGHTS.values() for name in names} == set(WEIGHT_FILES)


def test_missing_file_error_names_the_file_its_size_hash_url_and_place(tmp_path):
    spec = WEIGHT_FILES[FID_INCEPTION]
    with pytest.raises(WeightsMissingError) as info:
        find_weights(FID_INCEPTION, tmp_path)
    message = str(info.value)
    for part in (
        FID_INCEPTION,
        "95,628,359 bytes",
        spec.sha256,
        spec.url,
        str(tmp_path / FID_INCEPTION),
        "--weights-dir DIR",
        "$PIX2PIX_WEIGHTS",
        "~/.cache/pix2pix/weights",
    ):
        assert part in message
    assert isinstance(info.value, ValueError)


def _fake_distribution(root: Path, content: bytes) -> Path:
    """An installed `lpips` distribution (dist-info + its weight file) under `root`."""
    info = root / "lpips-9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lpips\nVersion: 9.9\n")
    heads = root / "lpips" / "weights" / "v0.1" / "alex.pth"
    heads.parent.mkdir(parents=True)
    heads.write_bytes(content)
    return heads


def test_lpips_heads_are_read_from_an_installed_lpips_and_hash_checked(tmp_path, monkeypatch):
    heads = _fake_distribution(tmp_path / "site", b"not the LPIPS heads")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert packaged_copy(LPIPS_ALEX_LINEAR) == heads
    with pytest.raises(WeightsMissingError, match=re.escape(str(heads)) + " is not the expected alex.pth"):
        find_weights(LPIPS_ALEX_LINEAR, tmp_path / "empty")
    # a copy in the weights folder comes first
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / LPIPS_ALEX_LINEAR).write_bytes(b"x")
    with pytest.raises(WeightsMissingError, match=re.escape(str(tmp_path / "weights" / LPIPS_ALEX_LINEAR))):
        find_weights(LPIPS_ALEX_LINEAR, tmp_path / "weights")
    assert packaged_copy(ALEXNET) is None  # no package ships the AlexNet trunk


def test_the_lpips_wheels_heads_are_the_standard_file(tmp_path):
    shipped = packaged_copy(LPIPS_ALEX_LINEAR)
    if shipped is None:
        pytest.skip("lpips is not installed (pip install --no-deps lpips: its wheel ships the heads)")
    assert find_weights(LPIPS_ALEX_LINEAR, tmp_path) == shipped


def test_default_folder_is_pix2pix_weights_then_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PIX2PIX_WEIGHTS", str(tmp_path))
    assert default_weights_dir() == tmp_path
    with pytest.raises(WeightsMissingError, match=re.escape(str(tmp_path / ALEXNET))):
        find_weights(ALEXNET)
    monkeypatch.delenv("PIX2PIX_WEIGHTS")
    assert default_weights_dir() == Path.home() / ".cache" / "pix2pix" / "weights"


def test_a_file_with_the_right_name_but_another_hash_is_refused(tmp_path):
    spec = WEIGHT_FILES[LPIPS_ALEX_LINEAR]
    path = tmp_path / LPIPS_ALEX_LINEAR
    path.write_bytes(np.random.default_rng(0).bytes(spec.size))  # the right size, random contents
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(WeightsMissingError) as info:
        find_weights(LPIPS_ALEX_LINEAR, tmp_path)
    message = str(info.value)
    assert "SHA-256 differs" in message and digest in message and spec.sha256 in message
    assert str(path) in message and spec.url in message
    assert "size differs" not in message

    path.write_bytes(b"truncated")  # the file itself may be given, and its size is checked too
    with pytest.raises(WeightsMissingError, match="size differs: found 9 bytes, expected 6,009"):
        find_weights(LPIPS_ALEX_LINEAR, path)


def test_prefix_only_entries_and_a_wrong_recorded_digest(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"some weights")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    prefix_only = dataclasses.replace(WEIGHT_FILES[ALEXNET], size=None, sha256=digest[:8])
    assert _verify(prefix_only, path) == (path, digest)
    with pytest.raises(WeightsMissingError, match=r"expected 00000000\.\.\. \(prefix\)"):
        _verify(dataclasses.replace(prefix_only, sha256="00000000"), path)
    # a file whose digest begins with the prefix in its name but differs from the recorded digest
    named = dataclasses.replace(prefix_only, name=f"weights-{digest[:8]}.pth", sha256="0" * 64)
    with pytest.raises(WeightsMissingError, match="recorded here may be wrong"):
        _verify(named, path)


def test_unknown_weight_file_name():
    with pytest.raises(ValueError, match="unknown weight file"):
        find_weights("inception_v3_google.pth", ".")


def test_perceptual_scores_checks_every_file_before_computing(tmp_path):
    images = _images(0, [(32, 32)] * 2)
    with pytest.raises(WeightsMissingError) as info:
        perceptual_scores(images, images, tmp_path)
    missing = [name for name in WEIGHT_FILES if packaged_copy(name) is None]  # lpips may ship its heads
    assert missing and all(name in str(info.value) for name in missing)  # all missing files at once
    with pytest.raises(WeightsMissingError) as info:
        perceptual_scores(images, images, tmp_path, which=("lpips",))
    assert ALEXNET in str(info.value) and (LPIPS_ALEX_LINEAR in str(info.value)) == (LPIPS_ALEX_LINEAR in missing)
    assert FID_INCEPTION not in str(info.value)


@pytest.mark.parametrize(
    ("real", "fake", "which", "error"),
    [
        (_images(0, [(32, 32)] * 2), _images(1, [(32, 32)] * 3), METRICS, "differ in number"),
        (_images(0, [(32, 32)]), _images(1, [(32, 32)]), ("fid",), "at least 2"),
        ([np.zeros((32, 32))] * 2, [np.zeros((32, 32))] * 2, ("lpips",), r"expected \(H, W, 3\)"),
        ([np.full((32, 32, 3), 255.0)] * 2, [np.zeros((32, 32, 3))] * 2, ("fid",), r"in \[0, 1\]"),
        (_images(0, [(32, 32)]), _images(1, [(32, 40)]), ("lpips",), "differ in shape"),
        (_images(0, [(24, 24)]), _images(1, [(24, 24)]), ("lpips",), "at least 31 px"),
        (_images(0, [(32, 32)] * 2), _images(1, [(32, 32)] * 2), ("is",), "unknown metrics"),
    ],
)
def test_bad_inputs_are_refused_before_the_weights_are_looked_for(tmp_path, real, fake, which, error):
    with pytest.raises(ValueError, match=error) as info:
        perceptual_scores(real, fake, tmp_path, which=which)
    assert not isinstance(info.value, WeightsMissingError)


# --- architectures ------------------------------------------------------------------------------

# torchvision's Inception_V3_Weights.IMAGENET1K_V1 lists num_params 27,161,264 for Inception3 with
# aux_logits=True and 1000 classes. pytorch-fid's network has no InceptionAux (conv0 768->128 1x1
# + BN, conv1 128->768 5x5 + BN, fc 768->1000) and 1008 classes instead of 1000.
_AUX_PARAMS = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
FID_INCEPTION_PARAMS = 27_161_264 - _AUX_PARAMS + 8 * (2048 + 1)


def test_fid_inception_has_the_layout_of_the_pytorch_fid_file():
    state = FIDInceptionV3().state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    expected = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_mean": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7b.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "Mixed_7c.branch_pool.bn.running_var": (192,),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    assert {key: shapes[key] for key in expected} == expected
    # 94 conv units (stem 5, Mixed_5* 3 x 7, 6a 4, 6b-e 4 x 10, 7a 6, 7b-c 2 x 9), each with conv.weight
    # and bn.{weight, bias, running_mean, running_var, num_batches_tracked}, then fc.{weight, bias}
    assert len(state) == 94 * 6 + 2
    assert not any(key.startswith("AuxLogits") for key in state)
    net = FIDInceptionV3()
    assert sum(p.numel() for p in net.parameters()) == FID_INCEPTION_PARAMS == 23_850_960
    assert {m.eps for m in net.modules() if isinstance(m, nn.BatchNorm2d)} == {0.001}


def test_fid_inception_forward_gives_pool3_features():
    torch.manual_seed(0)
    net = FIDInceptionV3().eval()
    seen = {}

    def record(module, inputs, output):
        seen[names[module]] = tuple(output.shape)

    names = {getattr(net, name): name for name in ("Mixed_5b", "Mixed_6a", "Mixed_7c")}
    for block in names:
        block.register_forward_hook(record)
    with torch.no_grad():
        features = net(torch.rand(2, 3, 40, 56))  # any size: resized to 299x299 first
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert seen == {"Mixed_5b": (2, 256, 35, 35), "Mixed_6a": (2, 768, 17, 17), "Mixed_7c": (2, 2048, 8, 8)}


def test_tensorflow_average_pool_leaves_the_padding_out():
    # A constant image stays constant at the borders; counting the zero padding would darken them.
    assert torch.equal(_tf_avg_pool(torch.ones(1, 1, 5, 5)), torch.ones(1, 1, 5, 5))


def test_lpips_layers_have_the_layout_of_the_standard_files():
    trunk = {key: tuple(value.shape) for key, value in AlexNet().state_dict().items()}
    assert trunk == {
        "features.0.weight": (64, 3, 11, 11),
        "features.0.bias": (64,),
        "features.3.weight": (192, 64, 5, 5),
        "features.3.bias": (192,),
        "features.6.weight": (384, 192, 3, 3),
        "features.6.bias": (384,),
        "features.8.weight": (256, 384, 3, 3),
        "features.8.bias": (256,),
        "features.10.weight": (256, 256, 3, 3),
        "features.10.bias": (256,),
        "classifier.1.weight": (4096, 256 * 6 * 6),
        "classifier.1.bias": (4096,),
        "classifier.4.weight": (4096, 4096),
        "classifier.4.bias": (4096,),
        "classifier.6.weight": (1000, 4096),
        "classifier.6.bias": (1000,),
    }
    # torchvision's AlexNet_Weights.IMAGENET1K_V1 lists num_params 61,100,840
    assert sum(p.numel() for p in AlexNet().parameters()) == 61_100_840
    heads = {key: tuple(value.shape) for key, value in LPIPSLinearHeads().state_dict().items()}
    assert heads == {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    assert not any("shift" in key or "scale" in key for key in LPIPS().state_dict())  # constants, not weights


def test_lpips_taps_the_five_relus():
    torch.manual_seed(0)
    net = LPIPS().eval()
    with torch.no_grad():
        taps = net.alexnet.relu_features(torch.rand(2, 3, 64, 64))
        x = torch.rand(2, 3, LPIPS_MIN_SIZE, LPIPS_MIN_SIZE) * 2 - 1
        assert net(x, x).tolist() == [0.0, 0.0]
    shapes = [tuple(t.shape) for t in taps]
    assert shapes == [(2, 64, 15, 15), (2, 192, 7, 7), (2, 384, 3, 3), (2, 256, 3, 3), (2, 256, 3, 3)]
    assert all((t >= 0).all() for t in taps)
    with pytest.raises(ValueError, match="at least 31 px"):
        net(torch.zeros(1, 3, 30, 30), torch.zeros(1, 3, 30, 30))


def test_loading_fails_loudly_on_missing_extra_or_misshaped_keys(tmp_path):
    heads = LPIPSLinearHeads().state_dict()
    cases = {
        "Missing key": {k: v for k, v in heads.items() if not k.startswith("lin4")},
        "Unexpected key": {**heads, "lin5.model.1.weight": torch.zeros(1, 512, 1, 1)},
        "size mismatch": {**heads, "lin0.model.1.weight": torch.zeros(1, 65, 1, 1)},
    }
    for error, state in cases.items():
        path = tmp_path / f"{error}.pth"
        torch.save(state, path)
        with pytest.raises(RuntimeError, match=error):
            _load_state_dict(LPIPSLinearHeads(), path)
    path = tmp_path / "pickled-module.pth"
    torch.save(LPIPSLinearHeads(), path)  # a pickled module, not a state dict: weights_only refuses it
    with pytest.raises(pickle.UnpicklingError):
        _load_state_dict(LPIPSLinearHeads(), path)


# --- round trip through perceptual_scores -------------------------------------------------------


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> tuple[Path, dict]:
    """The three standard files, made from seeded random networks and registered under their own
    hashes (the public registry would refuse them)."""
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    inception = FIDInceptionV3()
    for m in inception.modules():
        if isinstance(m, nn.Conv2d):  # He init keeps activations O(1) through the 47 conv layers
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    heads = LPIPSLinearHeads()
    for p in heads.parameters():
        p.data.abs_()  # the published lin weights are non-negative, so LPIPS >= 0
    registry = {}
    for name, net in ((FID_INCEPTION, inception), (ALEXNET, AlexNet()), (LPIPS_ALEX_LINEAR, heads)):
        path = folder / name
        torch.save(net.state_dict(), path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        registry[name] = dataclasses.replace(WEIGHT_FILES[name], size=path.stat().st_size, sha256=digest)
    return folder, registry


def test_perceptual_scores_round_trip(random_weights):
    folder, registry = random_weights
    shapes = [(32, 32), (40, 36)]  # a batch holds one shape: two batches
    real = _images(1, shapes)
    fake = [image**3 for image in _images(2, shapes)]  # darker: another distribution

    same = _perceptual_scores(real, real, folder, METRICS, "cpu", 2, registry)
    assert same["lpips_mean"] == 0.0
    # FID(x, x) ~ 0; with these weights FID(real, fake) is ~37, and the 2048-d matrix square
    # roots leave ~1e-6 of round-off
    assert abs(same["fid"]) < 1e-3
    assert np.isfinite([same["kid_mean"], same["kid_std"]]).all()
    assert same["num_images"] == 2
    assert same["weights"] == [
        {"name": name, "sha256": registry[name].sha256, "path": str(folder / name)}
        for name in (FID_INCEPTION, ALEXNET, LPIPS_ALEX_LINEAR)
    ]

    # (a second FID would cost two more 2048 x 2048 eigendecompositions; KID shows the fake
    # features are the fake images')
    other = _perceptual_scores(real, fake, folder, ("kid", "lpips"), "cpu", 16, registry)
    assert set(other) == {"num_images", "kid_mean", "kid_std", "lpips_mean", "lpips_std", "weights"}
    assert other["lpips_mean"] > 0
    assert other["kid_mean"] > same["kid_mean"] + 1e-3


def test_the_public_function_refuses_the_random_files(random_weights):
    folder, _ = random_weights
    images = _images(0, [(32, 32)] * 2)
    with pytest.raises(WeightsMissingError, match="SHA-256 differs"):
        perceptual_scores(images, images, folder, which=("lpips",))


# --- the standard files, where they are installed -----------------------------------------------


def _installed() -> bool:
    return all((default_weights_dir() / name).is_file() for name in WEIGHT_FILES)


@pytest.mark.skipif(not _installed(), reason="standard weight files not in $PIX2PIX_WEIGHTS or the cache")
def test_standard_files_load_strictly_and_score():
    real, fake = _images(1, [(64, 64)] * 2), _images(2, [(64, 64)] * 2)
    same = perceptual_scores(real, real)
    assert same["lpips_mean"] == 0.0 and abs(same["fid"]) < 1e-2
    other = perceptual_scores(real, fake, which=("lpips",))
    assert 0 < other["lpips_mean"] < 2


# --- against the standard packages, where they are installed ---------------------------------------
# pytorch-fid and lpips build their networks with torchvision's Python model code. PyPI's Linux
# torchvision wheel is a CUDA build: on this project's CPU torch its compiled ops cannot load
# (they link libtorch_cuda), and torchvision 0.28 then stops on import at two unguarded
# `register_fake` calls for its `nms` and `qnms` ops. Neither package uses those ops, so where the
# compiled ops are absent the two schemas are declared (no kernel: calling nms would still fail)
# and the pure-Python models import. Install for these tests, keeping the CPU torch:
#   pip install --no-deps torchvision==0.28.0 pytorch-fid==0.3.0 lpips==0.1.4


def _import_torchvision() -> None:
    import importlib
    import sys

    try:
        importlib.import_module("torchvision")
        return
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]  # the failed import left half-initialised modules behind
    schemas = torch.library.Library("torchvision", "DEF")  # kept alive: the schemas live as long as it
    schemas.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    schemas.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _SCHEMAS.append(schemas)
    importlib.import_module("torchvision")


_SCHEMAS: list = []


def _standard_packages() -> None:
    # CI's cross-check step sets PIX2PIX_REQUIRE_STANDARD_PACKAGES=1: there a skip would hide a failure
    give_up = pytest.fail if os.environ.get("PIX2PIX_REQUIRE_STANDARD_PACKAGES") == "1" else pytest.skip
    try:
        _import_torchvision()
    except Exception as err:
        give_up(f"torchvision cannot be imported here ({type(err).__name__}: {err}): the cross-check needs it")
    for name in ("pytorch_fid", "lpips"):
        try:
            __import__(name)
        except ImportError as err:
            give_up(f"{name} is not installed ({err}): the cross-check needs it")


def test_fid_inception_matches_pytorch_fid_feature_for_feature(monkeypatch):
    """pytorch-fid's own InceptionV3 (its FID blocks on torchvision's Inception), given our random
    weights through its loader instead of the download, against ours: the same 2048 pool3 features."""
    _standard_packages()
    import pytorch_fid.inception as pf

    torch.manual_seed(0)
    ours = FIDInceptionV3()
    for m in ours.modules():
        if isinstance(m, nn.Conv2d):  # He init keeps activations O(1) through the 47 conv layers
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    ours.eval()
    monkeypatch.setattr(pf, "load_state_dict_from_url", lambda *args, **kwargs: ours.state_dict())
    theirs = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    x = torch.rand(3, 3, 64, 80)
    with torch.no_grad():
        mine, standard = ours(x), theirs(x)[0].flatten(1)
    # the same PyTorch kernels in the same order: float32 equality up to a few ulps of the scale
    scale = standard.abs().max().item()
    torch.testing.assert_close(mine, standard, rtol=0, atol=1e-5 * scale)


def test_lpips_matches_the_lpips_package(tmp_path):
    """lpips.LPIPS (AlexNet trunk, v0.1 heads from its own wheel) against ours with the same trunk
    weights (random: lpips builds torchvision's AlexNet untrained with pnet_rand) and the same heads."""
    _standard_packages()
    import lpips

    torch.manual_seed(0)
    theirs = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    ours = LPIPS().eval()
    trunk = {}
    for k, v in theirs.net.state_dict().items():  # sliceK.<torchvision index>.weight -> features.<index>.weight
        _, index, kind = k.split(".")
        trunk[f"features.{index}.{kind}"] = v
    missing, unexpected = ours.alexnet.load_state_dict(trunk, strict=False)
    assert not unexpected and all(k.startswith("classifier.") for k in missing)  # the whole trunk, no more
    ours.heads.load_state_dict(torch.load(packaged_copy(LPIPS_ALEX_LINEAR), map_location="cpu", weights_only=True))
    x, y = torch.rand(2, 4, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        mine, standard = ours(x, y), theirs(x, y).flatten()
    torch.testing.assert_close(mine, standard, rtol=1e-5, atol=1e-7)
