"""The flags every long command shares, spelt one way (old spellings kept as hidden aliases).

--quiet / --no-progress   no progress bars (on a terminal a bar; elsewhere a line a minute)
--overwrite               replace what the command would otherwise refuse to overwrite
                          (--force: the old spelling of download-model and data download)
"""

from __future__ import annotations

import argparse

QUIET_HELP = "no progress bars (a bar on a terminal; elsewhere, as in a log file, a plain line a minute)"


def add_quiet(parser: argparse.ArgumentParser, help: str = QUIET_HELP) -> None:
    """--quiet and --no-progress, one meaning, read as `args.quiet`."""
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help=help)


def add_overwrite(parser: argparse.ArgumentParser, help: str, force_alias: bool = False) -> None:
    """--overwrite, read as `args.overwrite`; `force_alias`: --force too, hidden (its old spelling)."""
    parser.add_argument("--overwrite", dest="overwrite", action="store_true", help=help)
    if force_alias:
        parser.add_argument("--force", dest="overwrite", action="store_true", help=argparse.SUPPRESS)
