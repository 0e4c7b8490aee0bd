"""Data layouts and formats: paired folders, the preprocess modes for non-square and full-size
images, 1 / 3 / N channels at 8 and 16 bit (PNG, TIFF, .npy), the memory cache, and the
`pix2pix data combine` / `split` tools. Everything is made in the test, 32-64 px."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.cli import main
from pix2pix.data.aligned import AlignedDataset, Augment, DatasetError
from pix2pix.data.folders import FoldersDataset
from pix2pix.data.images import (
    ImageInfo,
    _write_png16,
    convert_channels,
    image_info,
    read_image,
    to_tensor,
    write_picture,
)
from pix2pix.data.prepare import combine_folders, split_dataset
from pix2pix.training.train import train

from ..conftest import tiny_config


def _noise(h: int, w: int, c: int = 3, seed: int = 0, dtype: type = np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 65536 if dtype == np.uint16 else 256
    return rng.integers(0, top, (h, w, c)).astype(dtype)


def _gradient(h: int = 32, w: int = 32) -> np.ndarray:
    """Every pixel distinct, so crops and mirrors are visible."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, 255 - (xx + yy) * 127 // (h + w)], axis=-1).astype(np.uint8)


def _folders(root: Path, names: dict[str, int], size: tuple[int, int] = (32, 32), ext_b: str = ".jpg") -> Path:
    """root/{split}/A/i.png and root/{split}/B/i.jpg for `names` = {split: count}."""
    h, w = size
    for split, count in names.items():
        for i in range(count):
            (root / split / "A").mkdir(parents=True, exist_ok=True)
            (root / split / "B").mkdir(parents=True, exist_ok=True)
            Image.fromarray(_noise(h, w, seed=i)).save(root / split / "A" / f"{i:03d}.png")
            Image.fromarray(_noise(h, w, seed=100 + i)).save(root / split / "B" / f"{i:03d}{ext_b}")
    return root


def _aligned(root: Path, count: int, half: tuple[int, int], splits: tuple[str, ...] = ("train", "val")) -> Path:
    h, w = half
    for split in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(_noise(h, 2 * w, seed=i)).save(root / split / f"{i}.png")
    return root


def _run(data: Path, tmp_path: Path, **overrides) -> dict:
    values = {"max_steps": 2, "num_samples": 1, **overrides}
    return train(tiny_config(data, **values), tmp_path / "run", progress=False)


# --- paired folders ---


def test_paired_folders_train_and_match_by_name(tmp_path: Path) -> None:
    data = _folders(tmp_path / "data", {"train": 4, "val": 2})
    summary = _run(data, tmp_path, dataset_mode="folders")
    assert summary["step"] == 2
    dataset = FoldersDataset(data / "train", "AtoB", Augment("none", flip=False))
    sample = dataset[1]
    assert sample["path"] == str(data / "train" / "A" / "001.png")
    assert torch.equal(sample["real_a"], to_tensor(_noise(32, 32, seed=1)))  # A is lossless PNG
    assert sample["real_b"].shape == (3, 32, 32)
    flipped = FoldersDataset(data / "train", "BtoA", Augment("none", flip=False))[1]
    assert torch.equal(flipped["real_b"], sample["real_a"])


def test_paired_folders_share_one_crop_and_flip(tmp_path: Path) -> None:
    for side in "AB":
        (tmp_path / side).mkdir()
        Image.fromarray(_gradient()).save(tmp_path / side / "x.png")
    dataset = FoldersDataset(tmp_path, augment=Augment("resize_and_crop", load_size=40, crop_size=24))
    samples = [dataset[(0, seed)] for seed in range(12)]
    assert all(torch.equal(s["real_a"], s["real_b"]) for s in samples)
    assert len({s["real_a"].numpy().tobytes() for s in samples}) > 1


def test_paired_folders_report_unmatched_names(tmp_path: Path) -> None:
    data = _folders(tmp_path / "data", {"train": 3})
    Image.fromarray(_noise(32, 32)).save(data / "train" / "A" / "only_a.png")
    Image.fromarray(_noise(32, 32)).save(data / "train" / "B" / "only_b.png")
    Image.fromarray(_noise(16, 16)).save(data / "train" / "B" / "002.png")  # second B named 002
    with pytest.raises(DatasetError) as err:
        FoldersDataset(data / "train")
    message = str(err.value)
    assert "only_a.png: no partner" in message and "only_b.png: no partner" in message
    assert "002" in message and "also used by" in message
    dataset = FoldersDataset(data / "train", skip_bad=True)
    assert len(dataset) == 3 and len(dataset.skipped) == 3


def test_paired_folders_need_equal_sizes(tmp_path: Path) -> None:
    data = _folders(tmp_path / "data", {"train": 2})
    Image.fromarray(_noise(24, 24)).save(data / "train" / "B" / "001.jpg")
    with pytest.raises(DatasetError, match=r"001.png: A is 32x32 but B \(001.jpg\) is 24x24"):
        FoldersDataset(data / "train")


# --- preprocess modes for non-square and full-size images ---


@pytest.mark.parametrize(
    ("preprocess", "load", "shape", "depth"),
    [("scale_width_and_crop", 36, (32, 32), 0), ("scale_width", 48, (24, 48), 3), ("none", 0, (32, 64), 5)],
)
def test_preprocess_modes_on_non_square_images(
    tmp_path: Path, preprocess: str, load: int, shape: tuple, depth: int
) -> None:
    data = _aligned(tmp_path / "data", 3, half=(32, 64))  # halves 64 wide, 32 high
    aug = Augment(preprocess, load_size=load, crop_size=32)
    assert AlignedDataset(data / "train", augment=aug)[(0, 7)]["real_a"].shape == (3, *shape)
    overrides = dict(preprocess=preprocess, unet_depth=depth, batch_size=2, num_samples=2, load_size=load or 36)
    summary = _run(data, tmp_path, **overrides)
    assert summary["step"] == 2


def test_full_size_needs_a_multiple_of_the_unet_size(tmp_path: Path) -> None:
    data = _aligned(tmp_path / "data", 2, half=(48, 48))  # 48 = 16 * 3: depth 4 at most
    with pytest.raises(DatasetError) as err:
        _run(data, tmp_path, preprocess="none")  # depth 5 from crop_size 32: multiples of 32
    assert "48x48 is not a multiple of 32" in str(err.value) and "--unet-depth 4" in str(err.value)
    assert not (tmp_path / "run").exists()  # failed before the run directory was touched
    assert _run(data, tmp_path, preprocess="none", unet_depth=4)["step"] == 2


def test_full_size_batches_need_equal_sizes(tmp_path: Path) -> None:
    data = _aligned(tmp_path / "data", 3, half=(32, 32))
    Image.fromarray(_noise(64, 128)).save(data / "train" / "big.png")
    with pytest.raises(DatasetError, match="big.png: network input 64x64 differs from 32x32") as err:
        _run(data, tmp_path, preprocess="none", batch_size=2)
    assert "--batch-size 1" in str(err.value)
    assert _run(data, tmp_path, preprocess="none", batch_size=1)["step"] == 2


# --- channels and bit depths ---


def test_to_tensor_scales_by_the_dtype() -> None:
    assert to_tensor(np.array([[[0], [255]]], np.uint8)).flatten().tolist() == [-1.0, 1.0]
    assert to_tensor(np.array([[[0], [65535]]], np.uint16)).flatten().tolist() == [-1.0, 1.0]
    assert to_tensor(np.array([[[0.0], [0.25]]], np.float32)).flatten().tolist() == [-1.0, -0.5]
    half16 = to_tensor(np.array([[[257 * 128]]], np.uint16)).item()
    assert half16 == pytest.approx(to_tensor(np.array([[[128]]], np.uint8)).item(), abs=1e-6)


@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_16_bit_colour_png_is_read_losslessly(tmp_path: Path, filter_type: int) -> None:
    """Pillow keeps only 8 bits of 16-bit colour PNG; our reader keeps all 16 with every row filter."""
    pixels = _noise(9, 11, 3, seed=filter_type, dtype=np.uint16)
    _write_png16(pixels, tmp_path / "x.png", filter_type)
    back = read_image(tmp_path / "x.png")
    assert back.dtype == np.uint16 and np.array_equal(back, pixels)
    assert image_info(tmp_path / "x.png") == ImageInfo(11, 9, 3, 16)


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("filter_type", [0, 1, 2, 3, 4])
def test_16_bit_png_codec_and_pure_decoder_agree_bit_for_bit(tmp_path: Path, filter_type: int, channels: int) -> None:
    """OpenCV's libpng (where installed) and the pure decoder give the same samples for every row
    filter; gray + alpha always takes the pure decoder (OpenCV would expand it to BGRA)."""
    from pix2pix.data.images import _decode_png16, _read_png16_opencv

    pixels = _noise(13, 17, channels, seed=10 * channels + filter_type, dtype=np.uint16)
    _write_png16(pixels, tmp_path / "x.png", filter_type)
    data = (tmp_path / "x.png").read_bytes()
    assert np.array_equal(_decode_png16(data, tmp_path / "x.png"), pixels)
    fast = _read_png16_opencv(data)
    if channels == 2:
        assert fast is None
    else:
        pytest.importorskip("cv2")
        assert fast is not None and fast.dtype == np.uint16 and np.array_equal(fast, pixels)
    assert _read_png16_opencv(data[:-12]) is None  # cut short: the pure decoder names the problem


def test_16_bit_png_without_opencv_decodes_with_a_note_on_speed(tmp_path: Path, monkeypatch) -> None:
    import sys

    from pix2pix.data import images

    monkeypatch.setitem(sys.modules, "cv2", None)
    monkeypatch.setattr(images, "_slow_png16_noted", False)
    pixels = _noise(5, 6, 3, seed=3, dtype=np.uint16)
    _write_png16(pixels, tmp_path / "x.png", 4)
    with pytest.warns(UserWarning, match="pure Python.*pix2pix\\[edges\\]"):
        assert np.array_equal(read_image(tmp_path / "x.png"), pixels)


def test_16_bit_gray_and_rgb_png_train_losslessly(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    gray = _noise(32, 64, 1, dtype=np.uint16)
    write_picture(gray, data / "train" / "gray.png")  # Pillow's I;16
    assert Image.open(data / "train" / "gray.png").mode == "I;16"
    write_picture(_noise(32, 64, 3, seed=1, dtype=np.uint16), data / "train" / "rgb.png")
    dataset = AlignedDataset(data / "train", augment=Augment("none", flip=False), in_channels=1, out_channels=1)
    real_a = dataset[0]["real_a"]  # gray.png sorts first: its left half, all 16 bits
    assert torch.equal(real_a, to_tensor(gray[:, :32]))
    assert _run(data, tmp_path, in_channels=1, out_channels=1)["step"] == 2


def test_n_channel_npy_pairs_train(tmp_path: Path) -> None:
    """5 bands in (uint16), 2 out (float in [0, 1]) as paired folders of .npy arrays."""
    data = tmp_path / "data"
    for split in ("train", "val"):
        for i in range(3):
            for side, array in (("A", _noise(32, 32, 5, seed=i, dtype=np.uint16)), ("B", _noise(32, 32, 2) / 255.0)):
                (data / split / side).mkdir(parents=True, exist_ok=True)
                np.save(data / split / side / f"{i}.npy", array.astype(np.float32 if side == "B" else np.uint16))
    sample = FoldersDataset(data / "train", augment=Augment("none", flip=False), in_channels=5, out_channels=2)[0]
    assert sample["real_a"].shape == (5, 32, 32) and sample["real_b"].shape == (2, 32, 32)
    assert torch.equal(sample["real_a"], to_tensor(_noise(32, 32, 5, seed=0, dtype=np.uint16)))
    assert _run(data, tmp_path, dataset_mode="folders", in_channels=5, out_channels=2)["step"] == 2
    with pytest.raises(DatasetError, match="has 5 channels; a 3-channel model cannot read it"):
        FoldersDataset(data / "train")


def test_npy_convention_is_enforced(tmp_path: Path) -> None:
    np.save(tmp_path / "big.npy", np.full((4, 4), 1.5, np.float32))
    np.save(tmp_path / "int.npy", np.zeros((4, 4), np.int64))
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\]"):
        read_image(tmp_path / "big.npy")
    with pytest.raises(ValueError, match="int64 pixels; use uint8, uint16"):
        read_image(tmp_path / "int.npy")


def test_n_channel_tiff(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile", reason="tifffile not installed: N-channel TIFF test skipped")
    bands = _noise(16, 32, 5, dtype=np.uint16)
    tifffile.imwrite(tmp_path / "contig.tif", bands, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(bands, -1, 0), photometric="minisblack", planarconfig="separate"
    )
    tifffile.imwrite(tmp_path / "rgb16.tif", bands[..., :3], photometric="rgb")
    for name in ("contig.tif", "planar.tif"):
        assert np.array_equal(read_image(tmp_path / name), bands), name
        assert image_info(tmp_path / name) == ImageInfo(32, 16, 5, 16)
    assert np.array_equal(read_image(tmp_path / "rgb16.tif"), bands[..., :3])  # Pillow would give 8 bits


def test_palette_alpha_cmyk_convert_predictably(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128  # red at half opacity
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.mode == "RGBA"  # kept for a 4-channel model ...
    assert np.asarray(convert_channels(image, 3))[0, 0].tolist() == [100, 0, 0]  # ... else on black
    assert np.asarray(convert_channels(image, 4))[0, 0].tolist() == [200, 0, 0, 128]
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.mode == "RGB" and image_info(tmp_path / "cmyk.jpg").channels == 3
    r, g, b = np.asarray(cmyk)[0, 0].tolist()
    assert r > 250 and g < 5 and b < 5  # Pillow's CMYK -> RGB, no colour profile
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30])
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").mode == "RGB"
    assert np.asarray(read_image(tmp_path / "p.png"))[0, 0].tolist() == [10, 20, 30]
    palette.save(tmp_path / "pt.png", transparency=1)
    assert read_image(tmp_path / "pt.png").mode == "RGBA"
    assert np.asarray(convert_channels(read_image(tmp_path / "pt.png"), 3))[0, 0].tolist() == [0, 0, 0]
    gray = convert_channels(np.full((2, 2, 3), [65535, 0, 0], np.uint16), 1)
    assert gray.dtype == np.uint16 and gray[0, 0, 0] == round(0.299 * 65535)


def test_translate_writes_16_bit_png(tmp_path: Path, capsys) -> None:
    data = _aligned(tmp_path / "data", 2, half=(32, 32))
    _run(data, tmp_path)
    model, out8, out16 = tmp_path / "run" / "model", tmp_path / "out8", tmp_path / "out16"
    common = ["translate", "--model", str(model), str(data / "val"), "--aligned", "--mode", "eval"]
    assert main([*common, "--out", str(out8)]) == 0
    assert main([*common, "--out", str(out16), "--bit-depth", "16"]) == 0
    eight, sixteen = read_image(out8 / "0.png"), read_image(out16 / "0.png")
    assert isinstance(sixteen, np.ndarray) and sixteen.dtype == np.uint16 and sixteen.shape == (32, 32, 3)
    assert np.abs(sixteen / 257.0 - np.asarray(eight)).max() <= 0.5 + 1e-6  # same image, finer steps


# --- the memory cache ---


def test_memory_cache_gives_the_same_samples(tmp_path: Path) -> None:
    data = _aligned(tmp_path / "data", 4, half=(32, 32))
    aug = Augment("resize_and_crop", load_size=40, crop_size=32)
    plain = AlignedDataset(data / "train", augment=aug, out_channels=1)
    cached = AlignedDataset(data / "train", augment=aug, out_channels=1, cache="memory")
    assert cached.cache is not None and len(cached.cache) == 4
    for key in (0, (1, 5), (2, 11), (3, 12)):
        a, b = plain[key], cached[key]
        assert torch.equal(a["real_a"], b["real_a"]) and torch.equal(a["real_b"], b["real_b"])
    assert _run(data, tmp_path, cache="memory")["step"] == 2


# --- combine and split ---


def test_combine_matches_names_and_reports_the_rest(tmp_path: Path, capsys) -> None:
    a_dir, b_dir, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    for d in (a_dir / "train", b_dir / "train"):
        d.mkdir(parents=True)
    a0 = _noise(16, 24)
    Image.fromarray(a0).save(a_dir / "train" / "0.png")
    Image.fromarray(a0[..., 0]).save(b_dir / "train" / "0.png")  # gray B: repeated into colour
    Image.fromarray(_noise(16, 24)).save(a_dir / "train" / "1.png")
    Image.fromarray(_noise(8, 12)).save(b_dir / "train" / "1.png")  # other size
    Image.fromarray(_noise(16, 24)).save(a_dir / "train" / "lonely.png")
    argv = ["data", "combine", str(a_dir), str(b_dir), str(out)]
    assert main(argv) == 1  # one pair could not be combined
    captured = capsys.readouterr()
    assert "lonely.png: no partner" in captured.err and "A is 24x16 but B is 12x8" in captured.err
    pair = np.asarray(Image.open(out / "train" / "0.png"))
    assert pair.shape == (16, 48, 3)
    assert np.array_equal(pair[:, :24], a0) and np.array_equal(pair[:, 24:], np.repeat(a0[..., :1], 3, axis=2))
    assert main(argv) == 2 and "exists" in capsys.readouterr().err  # never overwrites unasked
    assert main([*argv, "--overwrite", "--resize", "nearest"]) == 0
    assert Image.open(out / "train" / "1.png").size == (48, 16)
    # 16 + 8 bit gives a 16-bit pair, losslessly
    result = combine_folders(a_dir, b_dir, tmp_path / "o16", ext="png", resize="bicubic")
    assert len(result.written) == 2
    wide = np.zeros((4, 4, 3), np.uint16) + 1000
    (tmp_path / "A16").mkdir()
    (tmp_path / "B8").mkdir()
    write_picture(wide, tmp_path / "A16" / "x.png")
    Image.fromarray(np.full((4, 4, 3), 255, np.uint8)).save(tmp_path / "B8" / "x.png")
    combine_folders(tmp_path / "A16", tmp_path / "B8", tmp_path / "o")
    both = read_image(tmp_path / "o" / "x.png")
    assert both.dtype == np.uint16 and both[0, 0, 0] == 1000 and both[0, 4, 0] == 65535


def test_split_is_seeded_and_never_overwrites(tmp_path: Path, capsys) -> None:
    def make(folder: Path) -> Path:
        folder.mkdir(parents=True)
        for i in range(20):
            Image.fromarray(_noise(8, 16, seed=i)).save(folder / f"{i}.png")
        return folder

    first = split_dataset(make(tmp_path / "one"), val=0.1, test=0.2, seed=3)
    again = split_dataset(make(tmp_path / "two"), val=0.1, test=0.2, seed=3, move=True)
    other = split_dataset(make(tmp_path / "three"), val=0.1, test=0.2, seed=4, dry_run=True)
    names = {k: [s.name for s in v] for k, v in first.assigned.items()}
    assert {k: len(v) for k, v in names.items()} == {"train": 14, "val": 2, "test": 4}
    assert names == {k: [s.name for s in v] for k, v in again.assigned.items()}
    assert names != {k: [s.name for s in v] for k, v in other.assigned.items()}
    assert sorted(p.name for p in (tmp_path / "one" / "val").iterdir()) == sorted(f"{n}.png" for n in names["val"])
    assert (tmp_path / "one" / "0.png").exists() and not (tmp_path / "two" / "0.png").exists()  # copy / move
    assert not (tmp_path / "three" / "train").exists()
    assert main(["data", "split", str(tmp_path / "one"), "--val", "0.1", "--test", "0.2", "--seed", "3"]) == 2
    assert "exists" in capsys.readouterr().err
    # paired folders split as pairs
    data = _folders(tmp_path / "pairs", {"": 10})
    assert main(["data", "split", str(data), "--val", "0.2", "--test", "0", "--move"]) == 0
    assert "moved 10 pairs" in capsys.readouterr().out
    val_a = sorted(p.stem for p in (data / "val" / "A").iterdir())
    assert len(val_a) == 2 and val_a == sorted(p.stem for p in (data / "val" / "B").iterdir())
    assert len(FoldersDataset(data / "train")) == 8
