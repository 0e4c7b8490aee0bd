"""The `pix2pix` command: one module per group of subcommands, each mapping flags onto the
library. Modules import the library inside their commands, so that `pix2pix --help` and every
parser load without torch.

pix2pix train --data DIR [--direction BtoA] [--preset NAME] [--run-dir DIR] [any config flag]
pix2pix train --resume RUN_DIR [--max-steps N]
pix2pix translate --model PATH INPUT... --out DIR [--mode paper|eval] [--seed N] [--backend onnxruntime]
pix2pix export --model PATH --format onnx OUT.onnx [--check]
pix2pix import-reference latest_net_G.pth --arch unet_256 --norm batch OUT_DIR
pix2pix download-model NAME --dest DIR   # the reference's published generators (--list)
pix2pix push MODEL REPO_ID [--dry-run [--stage-dir DIR]]   # to the Hugging Face Hub, with a model card
pix2pix serve --model PATH [--palette cityscapes|facades|none] [--port 8000]
pix2pix demo            # train on the built-in shapes data, then translate with the model
pix2pix presets         # list the shipped paper presets
pix2pix data check|combine|split|colorization|edges|download ...
pix2pix study create|serve|report   # the AMT "real vs fake" study of Tables 4-5
pix2pix evaluate ... / pix2pix reproduce NAME
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Any, NoReturn

from ..extras import MissingExtraError
from ..version import __version__
from . import data, data_tasks, evaluate, hub, inference, study, train


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line and a pointer to --help (not the usage block),
    with a "did you mean" for a mistyped choice or subcommand. Subparsers are of the same class."""

    def error(self, message: str) -> NoReturn:
        chosen = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if chosen:
            choices = re.findall(r"'([^']*)'", chosen.group(2)) or [c.strip() for c in chosen.group(2).split(",")]
            close = difflib.get_close_matches(chosen.group(1), choices, n=1)
            if close:
                message += f"; did you mean {close[0]!r}?"
        self.exit(2, f"{self.prog}: error: {message}\nsee `{self.prog} --help`\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        """As argparse's, but unrecognized arguments point to the help of the command they were given to."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            words = [parsed.command, *(v for k, v in vars(parsed).items() if k.endswith("_command") and v)]
            prog = " ".join([self.prog, *words])
            self.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extras)}\nsee `{prog} --help`\n")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pix2pix", description="Paired image-to-image translation (Isola et al., CVPR 2017).")
    parser.add_argument("--version", action="version", version=f"pix2pix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    train.register(sub)
    inference.register(sub)
    hub.register(sub)
    p = sub.add_parser("data", help="check and prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    data.register(data_sub)
    data_tasks.register(data_sub)
    p = sub.add_parser("study", help='"real vs fake" perceptual study (Tables 4-5): create, serve, report')
    study.register(p.add_subparsers(dest="study_command", required=True, metavar="COMMAND"))
    evaluate.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        # reproduce says how it resumes (the same command); a bare Ctrl-C gets train's way back
        resume = str(err) or "resume with pix2pix train --resume RUN_DIR"
        print(f"interrupted; the last checkpoint is kept ({resume})", file=sys.stderr)
        return 130
    except (ValueError, OSError, MissingExtraError) as err:
        # our errors (DatasetError, ImageError, RunDirError, CheckpointError, bad configs) are
        # ValueErrors naming the file or key; OSError covers missing or unwritable paths;
        # MissingExtraError names the optional packages and the pip command that installs them
        print(f"pix2pix: error: {err}", file=sys.stderr)
        return 2
