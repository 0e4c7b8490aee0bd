"""`pix2pix study ...`: the "real vs fake" perceptual study of the paper's Tables 4-5.

pix2pix study create --real DIR --fake [NAME=]DIR [--fake ...] --out STUDY [--pairing same|different] [--seed 0]
pix2pix study serve STUDY [--host 127.0.0.1] [--port 8000] [--exposure-ms 1000] [--practice 10] [--trials 40]
pix2pix study report STUDY [--resamples 10000] [--seed 0] [--include-incomplete]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..study.protocol import PAIRINGS, QUESTION, Protocol, parse_fake
from .flags import add_overwrite, add_quiet

# the library is imported inside each command, so that `pix2pix --help` loads no torch

PAPER = Protocol()


def cmd_create(args: argparse.Namespace) -> int:
    from ..study.design import create_study  # NumPy and Pillow: loaded by the command, not by --help

    protocol = PAPER.replace(
        exposure_ms=args.exposure_ms,
        practice=args.practice,
        trials=args.trials,
        fixation_ms=args.fixation_ms,
        display_px=args.display_px,
    )
    summary = create_study(
        args.real,
        [parse_fake(value) for value in args.fake],
        args.out,
        pairing=args.pairing,
        seed=args.seed,
        protocol=protocol,
        templates=args.templates,
        overwrite=args.overwrite,
        link=args.link,
        size=args.size,
        strict=args.strict,
    )
    notes = summary.format(limit=args.limit)
    if notes:
        print(notes, file=sys.stderr)
    methods = ", ".join(f"{name} ({folder})" for name, folder in summary.methods.items())
    print(
        f"wrote {summary.study}: {len(summary.methods)} method(s): {methods}; {summary.matched} matched images, "
        f"pairing {args.pairing}, {summary.templates} session templates of {protocol.practice} practice + "
        f"{protocol.trials} trials, {protocol.exposure_ms} ms exposure, seed {args.seed}"
    )
    print(f"serve it with: pix2pix study serve {summary.study}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..study.server import make_study_server

    server = make_study_server(
        args.study,
        args.host,
        args.port,
        exposure_ms=args.exposure_ms,
        practice=args.practice,
        trials=args.trials,
        fixation_ms=args.fixation_ms,
        display_px=args.display_px,
        abandon_after_s=args.abandon_after_min * 60,
        log_requests=not args.quiet,
    )
    store = server.store
    for warning in store.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if not server.loopback_only:
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine can take part "
            "(plain HTTP; put it behind HTTPS for a public study)",
            file=sys.stderr,
        )
    p = store.protocol
    counts = ", ".join(f"{m}: {c['complete']} complete / {c['started']} started" for m, c in store.counts().items())
    print(
        f'serving {args.study} at {server.url}: "{QUESTION}", {p.exposure_ms} ms exposure, {p.practice} practice '
        f"(with feedback) + {p.trials} trials; sessions so far: {counts}"
    )
    print(f"answers go to {store.responses_path}; Ctrl-C stops the server", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..study.report import build_report, format_markdown

    report = build_report(args.study, args.resamples, args.seed, args.include_incomplete)
    markdown = format_markdown(report)
    study = Path(args.study)
    json_path = Path(args.json) if args.json else study / "report.json"
    md_path = Path(args.markdown) if args.markdown else study / "report.md"
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    md_path.write_text(markdown)
    print(markdown, end="")
    print(f"\nwrote {md_path} and {json_path}", file=sys.stderr)
    return 0


def _add_protocol_flags(parser: argparse.ArgumentParser, defaults: str) -> None:
    group = parser.add_argument_group(f"protocol (defaults: {defaults})")
    group.add_argument("--exposure-ms", type=int, default=None, help="how long each pair is shown (paper: 1000)")
    group.add_argument("--practice", type=int, default=None, help="practice trials with feedback (paper: 10)")
    group.add_argument("--trials", type=int, default=None, help="trials without feedback that count (paper: 40)")
    group.add_argument(
        "--fixation-ms", type=int, default=None, help="fixation cross before each pair (not in the paper; 500)"
    )
    group.add_argument("--display-px", type=int, default=None, help="on-screen side of each image (paper: 256)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add create, serve and report to the `pix2pix study` group (each sets `func`)."""
    p = sub.add_parser(
        "create",
        help="prepare a study folder from real and generated images matched by name",
        description="Match real and generated images by file name (without extension; subfolders kept), draw "
        "session templates from a seed and copy the images into a self-contained study folder. Names missing from "
        "any folder are left out and listed. Each --fake folder is one method.",
    )
    p.add_argument("--real", required=True, type=Path, help="folder of real images (e.g. the dataset's targets)")
    p.add_argument(
        "--fake",
        required=True,
        action="append",
        metavar="[NAME=]DIR",
        help="folder of generated images; one per method, repeatable; the method is named after the folder "
        "unless NAME= is given (e.g. --fake L1+cGAN=out/l1_cgan)",
    )
    p.add_argument("--out", required=True, type=Path, help="the study folder to write")
    p.add_argument(
        "--pairing",
        choices=PAIRINGS,
        default="same",
        help="same: real and fake from the same input (the paper's colorization study); different: from "
        "different inputs (the paper's maps study, harder)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the templates: images drawn, order, sides")
    p.add_argument(
        "--templates", type=int, default=50, help="session templates (different image draws) per study (default 50)"
    )
    p.add_argument("--size", type=int, default=0, help="resize every image to SIZE x SIZE PNG (default: copy as is)")
    p.add_argument("--link", action="store_true", help="hard-link the images instead of copying (same file system)")
    p.add_argument("--strict", action="store_true", help="unmatched names are an error, not a note")
    add_overwrite(p, "replace an existing study folder (and its responses)")
    p.add_argument("--limit", type=int, default=10, help="unmatched names listed per folder")
    _add_protocol_flags(p, "the paper's: 1000 ms, 10 practice, 40 trials, 256 px")
    p.set_defaults(func=cmd_create)

    p = sub.add_parser(
        "serve",
        help="run the study in the browser: the paper's protocol, answers appended to STUDY/responses.jsonl",
        description="Each trial shows a real and a generated image side by side, then hides them and asks "
        f'"{QUESTION}" '
        "Each participant takes one session, which tests one method; methods get balanced numbers of participants. "
        "Every answer is on disk before the page hears back; a restarted server resumes every session.",
    )
    p.add_argument("study", metavar="STUDY", help="study folder from `pix2pix study create`")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument(
        "--abandon-after-min",
        type=float,
        default=30.0,
        help="an unfinished session idle this long stops counting when balancing methods (default 30)",
    )
    add_quiet(p, "do not log each request")
    _add_protocol_flags(p, "the study's, from study.json")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "report",
        help="per method: %% of trials judged real with bootstrap SE and 95%% CI; permutation tests between methods",
        description="Writes STUDY/report.md and STUDY/report.json and prints the Markdown.",
    )
    p.add_argument("study", metavar="STUDY")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples and permutations (10,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the permutations")
    p.add_argument(
        "--include-incomplete", action="store_true", help="count unfinished sessions too (default: complete only)"
    )
    p.add_argument("--json", help="where to write the JSON (default: STUDY/report.json)")
    p.add_argument("--markdown", help="where to write the Markdown (default: STUDY/report.md)")
    p.set_defaults(func=cmd_report)
