"""Messages a new user meets (issue 32, item 7): each says what happened and what to do, naming
the option, the port or the step."""

from __future__ import annotations

import errno
import re
import shutil
import socket
from pathlib import Path

import pytest

from pix2pix.cli import main
from pix2pix.serve.http import JsonHandler, JsonServer
from pix2pix.training import run as run_module
from pix2pix.training.train import DiskFullError, config_for_resume, train

from ..conftest import tiny_config
from .test_cli import TINY, _error


def test_a_flat_folder_says_it_validates_on_its_training_images(tiny_data: Path, tmp_path: Path, capsys) -> None:
    flat = tmp_path / "flat"
    shutil.copytree(tiny_data / "train", flat)  # pairs, no train/ or val/
    assert main(["train", "--data", str(flat), "--run-dir", str(tmp_path / "r"), "--max-steps", "1", *TINY]) == 0
    out = capsys.readouterr().out
    assert f"{flat}: no train/ folder, so validation and the sample grids use the training images" in out
    assert main(["train", "--data", str(tiny_data), "--run-dir", str(tmp_path / "s"), "--max-steps", "1", *TINY]) == 0
    assert "training images themselves" not in capsys.readouterr().out  # train/ and val/: nothing to say


def test_a_run_starts_with_a_header_and_a_resumed_run_says_the_steps_it_trained(
    tiny_data: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", "--data", str(tiny_data), "--run-dir", str(run_dir), "--max-steps", "2", *TINY]) == 0
    first = capsys.readouterr().out.splitlines()
    header = rf"training on cpu \(\d+ threads?\): 12 training pairs at 32 px, run folder {run_dir}"
    assert re.fullmatch(header, first[0])
    assert first[1].startswith("trained 2 steps in")
    assert main(["train", "--resume", str(run_dir), "--max-steps", "5", "--quiet"]) == 0
    again = capsys.readouterr().out
    assert f"run folder {run_dir}, from step 2\n" in again and "trained 3 steps (step 2 to 5) in" in again


def test_a_port_in_use_names_the_port_and_port_flag() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as err:
            JsonServer(("127.0.0.1", port), JsonHandler)
    message = str(err.value)
    assert f"port {port} on 127.0.0.1 is already in use" in message and "--port" in message
    assert "Errno" not in message


def test_a_seed_out_of_range_names_seed_and_the_range(tmp_path: Path, capsys) -> None:
    err = _error(capsys, ["train", "--data", str(tmp_path), "--seed", str(2**70)])
    assert "(--seed)" in err and "0 to 2**32 - 1" in err and "Overflow" not in err
    with pytest.raises(SystemExit):
        main(["translate", "--model", "m", "x.png", "--out", "o", "--seed", str(2**70)])
    assert "argument --seed" in capsys.readouterr().err


def test_argparse_errors_are_one_line_and_a_pointer_to_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--no-such-flag"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err
    assert err.splitlines() == [
        "pix2pix train: error: unrecognized arguments: --no-such-flag",
        "see `pix2pix train --help`",
    ]


@pytest.mark.parametrize(
    "argv,meant", [(["trian"], "train"), (["data", "chek", "d"], "check"), (["evaluate", "--task", "imag"], "image")]
)
def test_a_mistyped_choice_gets_did_you_mean(argv: list[str], meant: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    assert f"did you mean {meant!r}?" in capsys.readouterr().err


def test_a_full_disk_while_writing_model_says_which_step_it_holds(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    train(tiny_config(tiny_data, max_steps=2), run_dir, progress=False)

    def full(folder: Path, *args, **kwargs) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "model.safetensors"))

    monkeypatch.setattr(run_module, "save_model", full)  # checkpoint.pt is written, model/ is not
    with pytest.raises(DiskFullError) as err:
        train(config_for_resume(run_dir, {"max_steps": 4}), run_dir, resume=True, progress=False)
    message = str(err.value)
    assert "while writing model/ of step 4; checkpoint.pt holds step 4 and model/ still holds step 2" in message
    assert "previous checkpoint is intact" not in message and f"--resume {run_dir}" in message
