"""`pix2pix data ...` commands that make task datasets: edges, colorize, download."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to the `pix2pix data` group (each sets `func`)."""
