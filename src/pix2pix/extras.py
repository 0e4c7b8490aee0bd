"""Optional dependencies: importing them, or a message that names them and the extra to install."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says how to fix it."""


def require(packages: Sequence[str], purpose: str, hint: str) -> list[ModuleType]:
    """Import the optional `packages`, or raise MissingExtraError naming them and `hint` (the
    pip command that installs them)."""
    modules, missing = [], []
    for name in packages:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingExtraError(f"{purpose} needs {', '.join(missing)}, which is not installed: {hint}")
    return modules


def pyplot() -> ModuleType | None:
    """matplotlib.pyplot on the file-only Agg backend, or None where the `plots` extra is not
    installed (reports then keep their tables and say there is no plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
