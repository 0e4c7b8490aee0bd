from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pix2pix.cli import main

TINY = [
    "--load-size",
    "36",
    "--crop-size",
    "32",
    "--g-channels",
    "4",
    "--d-channels",
    "4",
    "--workers",
    "0",
    "--num-samples",
    "1",
    "--device",
    "cpu",
    "--no-progress",
]


def _pair(path: Path, w: int = 64, h: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pix2pix: error: ") and "Traceback" not in err
    return err


def test_train_then_translate_from_the_command_line(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--run-dir", str(run_dir), "--max-steps", "3", *TINY]) == 0
    assert "trained 3 steps" in capsys.readouterr().out
    out = tmp_path / "out"
    assert (
        main(
            [
                "translate",
                "--model",
                str(run_dir / "model"),
                str(tiny_data / "val"),
                "--out",
                str(out),
                "--aligned",
                "--mode",
                "eval",
            ]
        )
        == 0
    )
    outputs = sorted(out.glob("*.png"))
    assert len(outputs) == 2 and Image.open(outputs[0]).size == (32, 32)
    # a run directory works as --model too, and paper mode is seeded
    assert (
        main(["translate", "--model", str(run_dir), str(outputs[0]), "--out", str(tmp_path / "o2"), "--seed", "1"]) == 0
    )


def test_preset_values_and_flags_combine(tiny_data: Path, tmp_path: Path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text('description = "x"\nobjective = "l1"\nlambda_l1 = 50\n')
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--preset",
        str(preset),
        "--data",
        str(tiny_data),
        "--run-dir",
        str(run_dir),
        "--max-steps",
        "1",
        "--lambda",
        "20",
        *TINY,
    ]
    assert main(argv) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["objective"] == "l1" and config["lambda_l1"] == 20.0  # flag beats preset


def test_resume_from_the_command_line(tiny_data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--run-dir", str(run_dir), "--max-steps", "2", *TINY]) == 0
    assert main(["train", "--resume", str(run_dir), "--max-steps", "4", "--no-progress"]) == 0
    steps = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == 4


def test_missing_and_empty_folders(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    assert str(missing) in _error(capsys, ["train", "--data", str(missing), "--run-dir", str(tmp_path / "r1"), *TINY])
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    err = _error(capsys, ["train", "--data", str(empty), "--run-dir", str(tmp_path / "r2"), *TINY])
    assert str(empty / "train") in err and "no image files" in err
    assert "no dataset" in _error(capsys, ["train", "--run-dir", str(tmp_path / "r3"), *TINY])


def test_bad_files_are_each_named(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    _pair(data / "train" / "good.png")
    _pair(data / "train" / "odd.png", w=63)
    (data / "train" / "fake.jpg").write_text("this is not a jpeg")
    err = _error(capsys, ["train", "--data", str(data), "--run-dir", str(tmp_path / "r"), *TINY])
    assert "odd.png: width 63 is odd" in err
    assert "fake.jpg: not an image file" in err
    assert "2 of 3 files" in err


def test_bad_preset_key_and_value(tmp_path: Path, capsys) -> None:
    preset = tmp_path / "typo.toml"
    preset.write_text("lamda_l1 = 10\n")
    err = _error(capsys, ["train", "--preset", str(preset), "--data", str(tmp_path)])
    assert "lamda_l1" in err and str(preset) in err
    assert "unknown preset 'nonesuch'" in _error(capsys, ["train", "--preset", "nonesuch"])
    assert "objective" in _error(capsys, ["train", "--data", str(tmp_path), "--objective", "l1+foo"])


def test_translate_errors(tmp_path: Path, capsys) -> None:
    assert "config.json" in _error(capsys, ["translate", "--model", str(tmp_path), "x.png", "--out", str(tmp_path)])


def test_existing_run_is_not_overwritten(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    argv = ["train", "--data", str(tiny_data), "--run-dir", str(run_dir), "--max-steps", "1", *TINY]
    assert main(argv) == 0
    log = (run_dir / "log.jsonl").read_text()
    assert "--resume" in _error(capsys, argv)
    assert (run_dir / "log.jsonl").read_text() == log


def test_presets_are_listed(capsys) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in (
        "cityscapes_label2photo",
        "cityscapes_photo2label",
        "maps_sat2map",
        "maps_map2sat",
        "facades",
        "edges2shoes",
        "edges2handbags",
        "day2night",
        "colorization",
        "shapes",
    ):
        assert name in out


def test_demo_learns_and_translates(tmp_path: Path) -> None:
    """The README's first command, shortened: train on builtin:shapes, then translate its val set."""
    run_dir = tmp_path / "demo"
    assert main(["demo", "--run-dir", str(run_dir), "--max-steps", "40", "--no-progress"]) == 0
    assert len(list((run_dir / "translated").glob("*.png"))) == 16
    assert (run_dir / "model" / "model.safetensors").is_file()
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert log[-1]["g_l1"] < log[0]["g_l1"]


def test_colorization_preset_trains_on_a_folder_of_photos(tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"  # plain colour photos, no pairs: L in, ab out
    rng = np.random.default_rng(0)
    for i in range(4):
        photos.mkdir(exist_ok=True)
        base = rng.integers(0, 256, (1, 1, 3))
        Image.fromarray((base + rng.integers(0, 40, (40, 48, 3))).clip(0, 255).astype(np.uint8)).save(
            photos / f"{i}.jpg"
        )
    run_dir = tmp_path / "c"
    argv = ["train", "--preset", "colorization", "--data", str(photos), "--run-dir", str(run_dir)]
    assert main([*argv, "--max-steps", "2", *TINY]) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["dataset_mode"] == "colorization"
    assert (config["generator"]["in_channels"], config["generator"]["out_channels"]) == (1, 2)


def test_bad_preset_value_names_the_file(tmp_path: Path, capsys) -> None:
    preset = tmp_path / "rf.toml"
    preset.write_text("receptive_field = 50\n")
    err = _error(capsys, ["train", "--preset", str(preset), "--data", str(tmp_path)])
    assert str(preset) in err and "receptive_field = 50" in err


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running `code`."""
    import subprocess
    import sys

    probe = code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_help_and_the_parsers_load_without_torch() -> None:
    loaded = _modules_after(
        "import contextlib, io\nfrom pix2pix.cli import build_parser, main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main(['--help'])\n"
        "build_parser()"
    )
    assert "pix2pix.cli" in loaded and "torch" not in loaded


TRAINING = (
    "pix2pix.training.train",
    "pix2pix.training.run",
    "pix2pix.models.losses",
    "pix2pix.training.distributed",
    "pix2pix.data.datasets",
)


def test_translate_and_serve_import_nothing_of_training(tmp_path: Path, tiny_data: Path) -> None:
    from ..serve.test_demo import save_tiny_model

    model = save_tiny_model(tmp_path / "model")
    loaded = _modules_after(
        "from pix2pix.cli import main\n"
        f"assert main(['translate', '--model', {str(model)!r}, {str(tiny_data / 'val')!r}, "
        f"'--out', {str(tmp_path / 'out')!r}]) == 0\n"
        f"from pix2pix.serve import make_server\nmake_server({str(model)!r}, port=0).server_close()"
    )
    assert "pix2pix.inference.predict" in loaded and "pix2pix.serve.demo" in loaded  # what ran
    assert not [m for m in TRAINING if m in loaded]
