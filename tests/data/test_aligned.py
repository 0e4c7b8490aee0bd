"""Aligned pairs (appendix 6.2): which half is which, one jitter for both halves, seeded order,
dataset checks that name every bad file, image decoding, and the built-in shapes data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pix2pix.data.aligned import AlignedDataset, Augment, DatasetError, EpochSampler, check_aligned_folder, split_folder
from pix2pix.data.images import ImageError, image_size, open_image, to_image, to_tensor
from pix2pix.data.shapes import make_shapes_dataset

from ..conftest import SHARED_DATA

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _save_pair(path: Path, left: np.ndarray, right: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([left, right], axis=1)).save(path)
    return path


def _solid(colour: tuple[int, int, int], size: int = 32) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (size, size, 3)).copy()


def _gradient(size: int = 32) -> np.ndarray:
    """Every pixel distinct: R grows along x, G along y, so crops and mirrors are detectable."""
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([xx * 8, yy * 8, 255 - (xx + yy) * 4], axis=-1).astype(np.uint8)


@pytest.fixture
def red_blue(tmp_path: Path) -> Path:
    """Two pairs: red left half | blue right half."""
    for i in range(2):
        _save_pair(tmp_path / "pairs" / f"{i}.png", _solid(RED), _solid(BLUE))
    return tmp_path / "pairs"


@pytest.fixture
def twins(tmp_path: Path) -> Path:
    """Pairs whose two halves are the same gradient image."""
    for i in range(2):
        _save_pair(tmp_path / "twins" / f"{i}.png", _gradient(), _gradient())
    return tmp_path / "twins"


# --- which half is the input ---


def test_atob_input_is_the_left_half(red_blue: Path) -> None:
    sample = AlignedDataset(red_blue, "AtoB", Augment(preprocess="none", flip=False))[0]
    assert sample["real_a"].shape == sample["real_b"].shape == (3, 32, 32)
    assert torch.equal(sample["real_a"][:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))  # red in [-1, 1]
    assert torch.equal(sample["real_b"][:, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))  # blue
    assert sample["path"] == str(red_blue / "0.png")


def test_btoa_input_is_the_right_half(red_blue: Path) -> None:
    sample = AlignedDataset(red_blue, "BtoA", Augment(preprocess="none", flip=False))[0]
    assert torch.equal(sample["real_a"][:, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    assert torch.equal(sample["real_b"][:, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_unknown_direction_raises(red_blue: Path) -> None:
    with pytest.raises(ValueError, match="AtoC"):
        AlignedDataset(red_blue, "AtoC")


def test_values_span_minus_one_to_one(tmp_path: Path) -> None:
    black_white = np.zeros((32, 32, 3), np.uint8)
    black_white[:, 16:] = 255
    _save_pair(tmp_path / "bw" / "0.png", black_white, black_white)
    dataset = AlignedDataset(tmp_path / "bw", augment=Augment("resize_and_crop", 36, 32))
    for seed in range(4):
        real_a = dataset[(0, seed)]["real_a"]
        assert real_a.shape == (3, 32, 32)
        assert real_a.min() == -1.0 and real_a.max() == 1.0  # bicubic overshoot is clipped


def test_grayscale_and_two_channel_modes(red_blue: Path) -> None:
    sample = AlignedDataset(red_blue, augment=Augment("none", flip=False), in_channels=1)[0]
    assert sample["real_a"].shape == (1, 32, 32)
    with pytest.raises(ValueError, match="2-channel"):
        AlignedDataset(red_blue, out_channels=2)


# --- one jitter for both halves ---


@pytest.mark.parametrize("preprocess", ["resize_and_crop", "crop", "none"])
def test_same_crop_and_flip_on_both_halves(twins: Path, preprocess: str) -> None:
    dataset = AlignedDataset(twins, augment=Augment(preprocess, load_size=40, crop_size=24))
    samples = [dataset[(i % 2, seed)] for i, seed in enumerate(range(16))]
    for sample in samples:
        assert torch.equal(sample["real_a"], sample["real_b"])
    # and the jitter really varies: otherwise the check above proves nothing
    assert len({s["real_a"].numpy().tobytes() for s in samples}) > 1


def test_crop_offsets_and_mirroring_vary_with_the_seed(twins: Path) -> None:
    """With unique pixel values, the top-left pixel of a crop gives its offset; a mirrored
    crop has R decreasing along x."""
    dataset = AlignedDataset(twins, augment=Augment("crop", crop_size=24))
    offsets, mirrored = set(), set()
    for seed in range(40):
        real_a = to_image(dataset[(0, seed)]["real_a"])
        array = np.asarray(real_a).astype(int)
        flipped = array[0, 0, 0] > array[0, -1, 0]
        x = (array[0, -1 if flipped else 0, 0]) // 8
        y = array[0, 0, 1] // 8
        offsets.add((int(x), int(y)))
        mirrored.add(bool(flipped))
        expected = _gradient()[y : y + 24, x : x + 24]
        assert np.array_equal(array, expected[:, ::-1] if flipped else expected)
    assert mirrored == {True, False}
    assert all(0 <= x <= 8 and 0 <= y <= 8 for x, y in offsets)
    assert len(offsets) > 5


def test_same_seed_same_sample_other_seeds_differ(twins: Path) -> None:
    dataset = AlignedDataset(twins, augment=Augment("resize_and_crop", load_size=40, crop_size=32))
    first = dataset[(1, 123)]["real_a"]
    assert torch.equal(first, dataset[(1, 123)]["real_a"])
    assert any(not torch.equal(first, dataset[(1, seed)]["real_a"]) for seed in range(5))


def test_int_index_is_unaugmented(twins: Path) -> None:
    # validation samples: centre crop, no mirror, the same every time
    dataset = AlignedDataset(twins, augment=Augment("crop", crop_size=24))
    array = np.asarray(to_image(dataset[0]["real_a"]))
    assert np.array_equal(array, _gradient()[4:28, 4:28])


# --- epoch order ---


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    order = list(EpochSampler(20, seed=3, epoch=1))
    assert order == list(EpochSampler(20, seed=3, epoch=1))
    assert sorted(i for i, _ in order) == list(range(20))
    assert order != list(EpochSampler(20, seed=3, epoch=2))
    assert order != list(EpochSampler(20, seed=4, epoch=1))
    assert len({s for _, s in order}) == 20  # every sample gets its own jitter seed


def test_epoch_sampler_start_skips_exactly_the_first_items() -> None:
    full = list(EpochSampler(20, seed=0, epoch=5))
    resumed = EpochSampler(20, seed=0, epoch=5, start=7)
    assert len(resumed) == 13
    assert list(resumed) == full[7:]


def test_epoch_sampler_without_shuffle() -> None:
    assert [i for i, _ in EpochSampler(5, seed=0, epoch=0, shuffle=False)] == [0, 1, 2, 3, 4]


# --- dataset checks ---


def _good_pair(path: Path) -> Path:
    return _save_pair(path, _gradient(), _solid(BLUE))


def test_check_reports_every_bad_file_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "salted"
    _good_pair(folder / "good1.png")
    _good_pair(folder / "good2.jpg")
    (folder / "notes.png").write_text("this is not an image\n")
    Image.fromarray(np.zeros((32, 63, 3), np.uint8)).save(folder / "odd.png")
    with pytest.raises(DatasetError) as err:
        check_aligned_folder(folder)
    message = str(err.value)
    assert "2 of 4 files" in message
    assert str(folder / "notes.png") in message
    assert str(folder / "odd.png") in message and "width 63 is odd" in message
    assert "good1" not in message and "good2" not in message


def _truncated_jpeg(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header intact, scan data cut off
    return path


def test_open_image_reports_a_truncated_jpeg(tmp_path: Path) -> None:
    path = _truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match="truncated") as err:
        open_image(path)
    assert str(path) in str(err.value)


def test_empty_folder_error_names_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="no image files") as err:
        AlignedDataset(folder)
    assert str(folder) in str(err.value)
    assert "readme.txt" in str(err.value)  # says what it found instead


def test_missing_folder_error_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist") as err:
        split_folder(missing, "train")
    assert str(missing) in str(err.value)
    with pytest.raises(DatasetError) as err:
        AlignedDataset(missing)
    assert str(missing) in str(err.value)


def test_split_folder_falls_back_val_test_train(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    assert split_folder(root, "train") == root / "train"
    assert split_folder(root, "val") == root / "train"
    (root / "test").mkdir()
    assert split_folder(root, "val") == root / "test"
    (root / "val").mkdir()
    assert split_folder(root, "val") == root / "val"
    assert split_folder(root, "train") == root / "train"


def test_split_folder_of_a_flat_folder_is_the_folder(tmp_path: Path) -> None:
    _good_pair(tmp_path / "flat" / "0.png")
    assert split_folder(tmp_path / "flat", "train") == tmp_path / "flat"
    assert split_folder(tmp_path / "flat", "val") == tmp_path / "flat"


# --- decoding ---


def test_open_image_applies_exif_orientation(tmp_path: Path) -> None:
    array = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; a white column on the left
    array[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    img = open_image(path)
    assert img.size == (20, 40)
    assert image_size(path) == (20, 40)  # the cheap header check agrees
    # rotated clockwise: the left column becomes the top rows
    top, bottom = np.asarray(img)[:4].mean(), np.asarray(img)[-4:].mean()
    assert top > 200 and bottom < 50


def test_open_image_composites_alpha_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[255, 0, 0, 0], [0, 255, 0, 255], [200, 100, 50, 128]]], np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    img = open_image(path)
    assert img.mode == "RGB"
    pixels = np.asarray(img).astype(int)
    assert pixels[0, 0].tolist() == [0, 0, 0]  # transparent: black, whatever colour it hid
    assert pixels[0, 1].tolist() == [0, 255, 0]
    assert np.abs(pixels[0, 2] - np.array([200, 100, 50]) * 128 / 255).max() <= 1


def test_open_image_converts_palette_images(tmp_path: Path) -> None:
    img = Image.new("P", (4, 2))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    img.save(path, transparency=1)  # palette entry 1 is transparent
    pixels = np.asarray(open_image(path))
    assert pixels.shape == (2, 4, 3)
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 1].tolist() == [0, 0, 0]


def test_open_image_errors_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "text.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match="not an image") as err:
        open_image(text)
    assert str(text) in str(err.value)
    with pytest.raises(ImageError, match="not found"):
        open_image(tmp_path / "absent.png")


def test_tensor_image_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    rgb[0, 0], rgb[0, 1] = 0, 255
    tensor = to_tensor(Image.fromarray(rgb))
    assert tensor.shape == (3, 7, 9)
    assert tensor.min() == -1.0 and tensor.max() == 1.0
    assert np.array_equal(np.asarray(to_image(tensor)), rgb)
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(np.asarray(to_image(to_tensor(Image.fromarray(gray)))), gray)


def test_to_image_clamps_and_checks_shape() -> None:
    assert np.asarray(to_image(torch.full((3, 2, 2), 5.0))).min() == 255
    with pytest.raises(ValueError, match="shape"):
        to_image(torch.zeros(2, 4, 4))


# --- built-in shapes data ---


def test_make_shapes_dataset_is_deterministic(tmp_path: Path) -> None:
    first = make_shapes_dataset(tmp_path / "a", train=3, val=2, size=16, seed=7)
    second = make_shapes_dataset(tmp_path / "b", train=3, val=2, size=16, seed=7)
    other = make_shapes_dataset(tmp_path / "c", train=3, val=2, size=16, seed=8)
    for split, count in (("train", 3), ("val", 2)):
        files = sorted((first / split).iterdir())
        assert len(files) == count
        for path in files:
            assert path.read_bytes() == (second / split / path.name).read_bytes()
            assert Image.open(path).size == (32, 16)  # label | photo, each 16 x 16
    assert any(p.read_bytes() != (other / "train" / p.name).read_bytes() for p in sorted((first / "train").iterdir()))
    assert len(check_aligned_folder(first / "train")) == 3


# --- the real datasets in ../shared/data ---


def _shared(name: str) -> Path:
    folder = SHARED_DATA / name / "val"
    if not folder.is_dir():
        pytest.skip(f"../shared/data not present: {folder} is missing; real-data test skipped")
    return folder


@pytest.mark.parametrize(("name", "count"), [("cityscapes", 500), ("maps", 100), ("edges2shoes", 20)])
def test_shared_validation_sets_pass_the_check(name: str, count: int) -> None:
    assert len(check_aligned_folder(_shared(name))) == count


def test_cityscapes_yields_256_crops() -> None:
    dataset = AlignedDataset(_shared("cityscapes"), "AtoB", Augment())
    for key in (0, (3, 11)):
        sample = dataset[key]
        assert sample["real_a"].shape == sample["real_b"].shape == (3, 256, 256)
        assert sample["real_a"].min() >= -1.0 and sample["real_a"].max() <= 1.0
