"""The study's settings and names, in the standard library alone: the command parsers read their
defaults here without loading NumPy or Pillow (`pix2pix --help` stays fast)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

PAIRINGS = ("same", "different")
QUESTION = "Which image is fake?"  # answers name the side picked as fake, as in the paper
MAX_NAME = 64


class StudyError(ValueError):
    """A study that cannot be created, loaded or served as asked; the message says why."""


@dataclass(frozen=True)
class Protocol:
    """How one session runs. The defaults are the paper's (section 4.1, "AMT perceptual studies"),
    except fixation_ms, which the paper does not give."""

    exposure_ms: int = 1000  # "each image appeared for 1 second, after which the images disappeared"
    practice: int = 10  # "the first 10 images of each session were practice and Turkers were given feedback"
    trials: int = 40  # "no feedback was provided on the 40 trials of the main experiment"
    fixation_ms: int = 500  # a fixation cross between trials, so each pair appears where the eyes are
    display_px: int = 256  # side of each image on screen, CSS pixels: "presented to Turkers at 256 x 256"

    def __post_init__(self) -> None:
        checks = {
            "exposure_ms": (self.exposure_ms, 1, 600_000),
            "practice": (self.practice, 0, 10_000),
            "trials": (self.trials, 1, 10_000),
            "fixation_ms": (self.fixation_ms, 0, 60_000),
            "display_px": (self.display_px, 16, 4096),
        }
        for name, (value, low, high) in checks.items():
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise StudyError(f"{name} must be a whole number from {low} to {high}, got {value!r}")

    @property
    def total(self) -> int:
        return self.practice + self.trials

    def replace(self, **changes: int | None) -> Protocol:
        """A copy with the given (non-None) settings changed."""
        values = asdict(self)
        values.update({k: v for k, v in changes.items() if v is not None})
        return Protocol(**values)


def parse_fake(value: str) -> tuple[str, Path]:
    """`--fake DIR` (method named after the folder) or `--fake NAME=DIR`."""
    if "=" in value and not Path(value).is_dir():
        name, folder = value.split("=", 1)
        name = name.strip()
    else:
        folder = value
        name = Path(value.rstrip("/\\")).name
    if not name or len(name) > MAX_NAME or any(c in name for c in "\n\r\t"):
        raise StudyError(f"--fake {value!r}: a method name must be 1 to {MAX_NAME} characters on one line")
    return name, Path(folder)
