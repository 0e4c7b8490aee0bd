"""A refused `pix2pix train` writes nothing: every check runs before the run folder, config.json
or .lock is made, so the corrected command then runs (issue 32, item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pix2pix.cli import main

from .test_cli import TINY, _error


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


REFUSALS = {
    "best metric": (["--val-every", "2", "--best-metric", "val_psnrr"], "did you mean val_psnr"),
    "segmenter": (["--val-every", "2", "--segmenter", "no/such/segmenter"], "no/such/segmenter"),
    "cuda graphs": (["--compile", "default", "--cuda-graphs"], "cuda_graphs needs a CUDA device"),
    "config": (["--objective", "l1+foo"], "objective"),
    "data layout": (["--dataset-mode", "folders"], "A/"),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_a_refused_run_leaves_no_folder_and_the_corrected_command_runs(
    name: str, tiny_data: Path, tmp_path: Path, capsys
) -> None:
    flags, message = REFUSALS[name]
    run_dir = tmp_path / "run"
    argv = ["train", "--data", str(tiny_data), "--run-dir", str(run_dir), "--max-steps", "1", *TINY]
    assert message in _error(capsys, [*argv, *flags])
    assert not run_dir.exists()
    assert main(argv) == 0 and (run_dir / "config.json").is_file()


def test_a_refused_run_leaves_a_folder_that_was_there_as_it_was(tiny_data: Path, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine\n")
    before = _tree(run_dir)
    argv = ["train", "--data", str(tiny_data), "--run-dir", str(run_dir), "--max-steps", "1", *TINY]
    _error(capsys, [*argv, "--val-every", "2", "--best-metric", "val_psnrr"])
    assert _tree(run_dir) == before
    assert main(argv) == 0


def test_a_refused_builtin_run_removes_the_data_it_generated(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "shapes"
    argv = ["train", "--preset", "shapes", "--run-dir", str(run_dir), "--max-steps", "1", *TINY]
    # the data are generated (and checked) before the validator's segmenter check refuses
    missing = str(tmp_path / "none")
    assert missing in _error(capsys, [*argv, "--val-every", "2", "--segmenter", missing])
    assert not run_dir.exists()


def test_a_wrong_data_folder_on_a_fresh_run_does_not_mention_resume(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    err = _error(capsys, ["train", "--data", str(tmp_path / "nope"), "--run-dir", str(run_dir), *TINY])
    assert "does not exist" in err and "--resume" not in err
    assert not run_dir.exists()
