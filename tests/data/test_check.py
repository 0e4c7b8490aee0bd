"""`pix2pix data check` and the check at the start of training: every bad file named, the exit
codes, --skip-bad, truncated files found only mid-epoch, and the real datasets in ../shared/data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix.cli import main
from pix2pix.data.aligned import DatasetError
from pix2pix.data.check import Requirements, check_dataset
from pix2pix.data.images import ImageError
from pix2pix.training.train import train

from ..conftest import shared_dataset, tiny_config


def _pair(path: Path, w: int = 64, h: int = 32, seed: int = 0, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def _truncate(path: Path) -> Path:
    """Keep the header and half the scan: the header check passes, decoding fails."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def salted(tmp_path: Path) -> Path:
    """train/: 8 good 64x32 pairs and one of each kind of bad file; val/: 2 good pairs, one a
    copy of a training pair."""
    root = tmp_path / "salted"
    for i in range(8):
        _pair(root / "train" / f"good{i}.jpg", seed=i)
    _truncate(_pair(root / "train" / "truncated.jpg", seed=20))
    (root / "train" / "text.png").write_text("not an image, whatever the name says\n")
    (root / "train" / "empty.jpg").write_bytes(b"")
    _pair(root / "train" / "odd.png", w=63)
    _pair(root / "train" / "bigger.png", w=128, h=64, seed=21)
    _pair(root / "train" / "gray.jpg", seed=22, mode="L")
    shutil.copy(root / "train" / "good1.jpg", root / "train" / "copy_of_good1.jpg")
    _pair(root / "val" / "v0.jpg", seed=30)
    shutil.copy(root / "train" / "good2.jpg", root / "val" / "leak.jpg")
    return root


def test_check_names_every_bad_file(salted: Path, capsys) -> None:
    assert main(["data", "check", str(salted)]) == 1
    out = capsys.readouterr().out
    errors, warnings = out.split("warnings (")[0], out.split("warnings (")[1]
    assert "train/truncated.jpg: corrupt or truncated image" in errors
    assert "train/text.png: not an image file" in errors
    assert "train/empty.jpg: empty file (0 bytes)" in errors
    assert "train/odd.png: width 63 is odd" in errors
    assert "mixed sizes of each half: 32x32 (10), 64x64 (1); e.g. bigger.png" in warnings
    assert "train/gray.jpg: left half (A) and right half (B) are grayscale among colour images" in warnings
    assert "train/good1.jpg: same pixels as copy_of_good1.jpg" in warnings or (
        "train/copy_of_good1.jpg: same pixels as good1.jpg" in warnings
    )
    assert "val/leak.jpg: same pixels as train/good2.jpg (train/val overlap)" in warnings
    assert "4 errors, 4 warnings; NOT ready to train" in out
    table = " ".join(out.split())
    assert "train aligned 15 pairs 11 usable 4 errors 3 warnings 32x32 (10), 64x64 (1)" in table
    assert "val aligned 2 pairs 2 usable 0 errors 1 warnings" in table


def test_sizes_are_errors_where_the_preprocessing_needs_them(salted: Path) -> None:
    whole = Requirements("none", size_multiple=32, same_size=True)
    report = check_dataset(salted, requirements=whole, splits=["train"], full=False)
    bigger = [p for p in report.errors if p.path.name == "bigger.png"]
    assert bigger and "network input 64x64 differs from 32x32" in bigger[0].message
    crop = check_dataset(salted, requirements=Requirements("crop", crop_size=48), splits=["val"])
    assert {p.path.name for p in crop.errors} == {"v0.jpg", "leak.jpg"}
    assert "smaller than crop_size 48" in crop.errors[0].message


def test_exit_codes_and_fast_mode(salted: Path, tmp_path: Path, capsys) -> None:
    # fast (headers only) misses the truncated JPEG but not the rest
    report = check_dataset(salted, full=False)
    assert {p.path.name for p in report.errors} == {"text.png", "empty.jpg", "odd.png"}
    assert any("same file bytes" in p.message for p in report.warnings)
    clean = tmp_path / "clean"
    for i in range(3):
        _pair(clean / "train" / f"{i}.png", seed=i)
    assert main(["data", "check", str(clean)]) == 0
    _pair(clean / "train" / "gray.png", seed=5, mode="L")
    assert main(["data", "check", str(clean)]) == 0  # warnings alone pass ...
    assert main(["data", "check", str(clean), "--strict"]) == 1  # ... unless --strict
    assert main(["data", "check", str(clean / "nope")]) == 2
    assert "not a dataset folder" in capsys.readouterr().err


def test_folders_layout_check(tmp_path: Path, capsys) -> None:
    root = tmp_path / "pairs"
    for i in range(3):
        _pair(root / "train" / "A" / f"{i}.png", w=32, seed=i)
        _pair(root / "train" / "B" / f"{i}.jpg", w=32, seed=10 + i)
    _pair(root / "train" / "A" / "extra.png", w=32)
    _pair(root / "train" / "B" / "2.jpg", w=48, seed=3)  # replaces 2.jpg with another size
    assert main(["data", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "train/A/extra.png: no partner in" in out
    assert "train/A/2.png: A is 32x32 but B (2.jpg) is 48x32" in out
    assert "train folders 3 pairs 2 usable" in " ".join(out.split())


def test_training_stops_before_the_first_step_with_the_report(salted: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        train(tiny_config(salted, max_steps=2), tmp_path / "run", progress=False)
    message = str(err.value)
    for name in ("text.png", "empty.jpg", "odd.png"):
        assert name in message
    assert "3 of 15 files cannot be used" in message and "--skip-bad" in message
    assert not (tmp_path / "run").exists()


def test_skip_bad_trains_without_them_and_lists_them(salted: Path, tmp_path: Path, capsys) -> None:
    """The header check drops 3 files; the truncated JPEG passes it and is skipped when an epoch
    reaches it. 12 files pass the header check, batch 1, 12 steps: every file is drawn."""
    run_dir = tmp_path / "run"
    summary = train(tiny_config(salted, max_steps=12, batch_size=1, skip_bad=True), run_dir, progress=False)
    assert summary["step"] == 12
    captured = capsys.readouterr()
    assert "--skip-bad: training without 3 unusable file(s)" in captured.out
    assert "truncated.jpg: corrupt or truncated image" in captured.err
    skipped = (run_dir / "skipped.txt").read_text()
    for name in ("text.png", "empty.jpg", "odd.png", "truncated.jpg"):
        assert name in skipped


def test_truncated_file_mid_epoch_fails_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for i in range(2):
        _pair(data / "train" / f"{i}.jpg", seed=i)
    _truncate(_pair(data / "train" / "2.jpg", seed=2))
    with pytest.raises(ImageError, match=r"2\.jpg: corrupt or truncated image"):
        train(tiny_config(data, max_steps=3, batch_size=1), tmp_path / "run", progress=False)


def test_memory_cache_is_a_full_check(salted: Path, tmp_path: Path) -> None:
    """The cache decodes everything up front, so the truncated file is reported before step 1."""
    train_dir = salted / "train"
    for name in ("text.png", "empty.jpg", "odd.png"):
        (train_dir / name).unlink()
    with pytest.raises(DatasetError, match="truncated.jpg"):
        train(tiny_config(salted, max_steps=1, cache="memory"), tmp_path / "run", progress=False)


def test_channel_counts_the_model_cannot_read(tmp_path: Path) -> None:
    folder = tmp_path / "npy"
    folder.mkdir()
    np.save(folder / "five.npy", np.zeros((8, 16, 5), np.uint8))
    report = check_dataset(folder, requirements=Requirements(channels=(3, 3)))
    assert "A has 5 channels; a 3-channel model cannot read it" in report.errors[0].message
    assert not check_dataset(folder, requirements=Requirements(channels=(5, 5))).errors


@pytest.mark.parametrize(("name", "count", "size"), [("cityscapes", 500, "256x256"), ("maps", 100, "600x600")])
def test_real_validation_sets_pass_the_full_check(name: str, count: int, size: str, capsys) -> None:
    folder = shared_dataset(name)
    assert main(["data", "check", str(folder), "--splits", "val"]) == 0
    out = capsys.readouterr().out
    assert f"val aligned {count} pairs {count} usable 0 errors 0 warnings {size} ({count})" in " ".join(out.split())


def test_edges2shoes_passes_the_full_check() -> None:
    report = check_dataset(shared_dataset("edges2shoes"))
    assert not report.errors
    assert [len(s.usable) for s in report.splits] == [100, 20]


def test_whole_image_sides_follow_the_generators_stride(tmp_path: Path) -> None:
    """--preprocess none keeps whole images: the resnet18-unet needs sides that are multiples of 32
    (its five stride-2 stages), the 256 px U-Net multiples of 256."""
    for i in range(2):
        _pair(tmp_path / "data" / "train" / f"{i}.png", w=128, h=64, seed=i)  # halves 64 x 64
    check = ["data", "check", str(tmp_path / "data"), "--preprocess", "none", "--quiet"]
    assert main([*check, "--generator", "resnet18-unet"]) == 0
    assert main([*check, "--generator", "unet"]) == 1  # 64 is not a multiple of 2**8
    _pair(tmp_path / "data" / "train" / "2.png", w=96, h=48, seed=2)  # halves 48 x 48
    assert main([*check, "--generator", "resnet18-unet"]) == 1
