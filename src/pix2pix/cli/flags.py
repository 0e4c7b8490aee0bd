"""The flags every long command shares, spelt one way (old spellings kept as hidden aliases).

--quiet / --no-progress   no progress bars (on a terminal a bar; elsewhere a line a minute)
--overwrite               replace what the command would otherwise refuse to overwrite
                          (--force: the old spelling of download-model and data download)
"""

from __future__ import annotations

import argparse

from ..config import MAX_SEED

QUIET_HELP = "no progress bars (a bar on a terminal; elsewhere, as in a log file, a plain line a minute)"


def add_quiet(parser: argparse.ArgumentParser, help: str = QUIET_HELP) -> None:
    """--quiet and --no-progress, one meaning, read as `args.quiet`."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=help)


def add_overwrite(parser: argparse.ArgumentParser, help: str, force_alias: bool = False) -> None:
    """--overwrite, read as `args.overwrite`; `force_alias`: --force too, hidden (its old spelling)."""
    parser.add_argument("--overwrite", dest="overwrite", action="store_true", help=help)
    if force_alias:
        parser.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)


def seed(text: str) -> int:
    """An argparse type: a seed of the dropout noise, 0 to 2**32 - 1 (train's range too)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{value} is outside 0 to 2**32 - 1 ({MAX_SEED})")
    return value
