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


def _subparser(parser, *names: str):
    for name in names:
        parser = next(a for a in parser._actions if a.dest.endswith("command")).choices[name]
    return parser


def test_reproduce_help_lists_every_set(capsys) -> None:
    from pix2pix.paper import SETS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["reproduce", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert {"seeds", "table1_longer"} <= set(SETS)
    for name in [*SETS, "colorization"]:
        assert name in shown, name


def test_every_demo_option_has_help() -> None:
    demo = _subparser(build_parser(), "demo")
    assert all(action.help for action in demo._actions)
