"""One flag vocabulary (issue 32, item 3): every long command takes --quiet and --no-progress,
every command that can overwrite takes --overwrite, and the old spellings still parse. Parsed
with the real parser, so a command that loses a spelling fails here."""

from __future__ import annotations

import pytest

from pix2pix.cli import build_parser

LONG_COMMANDS = {
    "train": ["train"],
    "demo": ["demo"],
    "translate": ["translate", "--model", "m", "in.png", "--out", "o"],
    "evaluate": ["evaluate", "--model", "m", "--data", "d"],
    "evaluate train-segmenter": ["evaluate", "train-segmenter", "--data", "d", "--out", "o"],
    "reproduce": ["reproduce", "table1", "--data", "d"],
    "export": ["export", "--model", "m", "m.onnx"],
    "serve": ["serve", "--model", "m"],
    "download-model": ["download-model", "facades_label2photo"],
    "data download": ["data", "download", "facades"],
    "data edges": ["data", "edges", "photos", "out"],
    "data colorize": ["data", "colorize", "photos", "out"],
    "data check": ["data", "check", "d"],
    "study serve": ["study", "serve", "s"],
    "push": ["push", "m", "me/repo"],
}

OVERWRITING = {
    name: LONG_COMMANDS[name]
    for name in (
        "train",
        "demo",
        "translate",
        "evaluate",
        "evaluate train-segmenter",
        "export",
        "download-model",
        "data download",
        "data edges",
        "data colorize",
    )
} | {
    "import-reference": ["import-reference", "G.pth", "out", "--arch", "unet_256", "--norm", "batch"],
    "study create": ["study", "create", "--out", "s", "--real", "r", "--fake", "method=f"],
}


@pytest.mark.parametrize("name", LONG_COMMANDS)
@pytest.mark.parametrize("flag", ["--quiet", "--no-progress"])
def test_every_long_command_takes_quiet_and_no_progress(name: str, flag: str) -> None:
    parser = build_parser()
    assert parser.parse_args(LONG_COMMANDS[name]).quiet is False
    assert parser.parse_args([*LONG_COMMANDS[name], flag]).quiet is True


@pytest.mark.parametrize("name", OVERWRITING)
def test_every_overwriting_command_takes_overwrite(name: str) -> None:
    parser = build_parser()
    assert parser.parse_args(OVERWRITING[name]).overwrite is False
    assert parser.parse_args([*OVERWRITING[name], "--overwrite"]).overwrite is True


@pytest.mark.parametrize("name", ["download-model", "data download"])
def test_force_is_kept_as_a_hidden_alias_of_overwrite(name: str, capsys) -> None:
    parser = build_parser()
    assert parser.parse_args([*LONG_COMMANDS[name], "--force"]).overwrite is True
    with pytest.raises(SystemExit):
        parser.parse_args([*LONG_COMMANDS[name], "--help"])
    shown = capsys.readouterr().out
    assert "--overwrite" in shown and "--force" not in shown
