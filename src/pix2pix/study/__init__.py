"""The paper's "real vs fake" perceptual study (section 4.1, Tables 4-5): prepare, serve, report.

Example:
    >>> from pix2pix.study import create_study, make_study_server, build_report
    >>> create_study("maps/val_photos", [("L1", "out/l1"), ("L1+cGAN", "out/cgan")], "study",
    ...              pairing="different")  # doctest: +SKIP
    >>> make_study_server("study", port=8000).serve_forever()  # doctest: +SKIP
    >>> build_report("study")["methods"][1]["judged_real"]  # doctest: +SKIP
"""

from .design import PAIRINGS, QUESTION, Protocol, Study, StudyError, create_study, load_study
from .report import build_report, format_markdown
from .server import StudyServer, make_study_server
from .store import RESPONSE_FIELDS, StudyStore

__all__ = [
    "PAIRINGS",
    "QUESTION",
    "RESPONSE_FIELDS",
    "Protocol",
    "Study",
    "StudyError",
    "StudyServer",
    "StudyStore",
    "build_report",
    "create_study",
    "format_markdown",
    "load_study",
    "make_study_server",
]
