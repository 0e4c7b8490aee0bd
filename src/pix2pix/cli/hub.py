"""`pix2pix push` and `pix2pix download-model`: sharing models (hub/)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .flags import add_overwrite, add_quiet

# the library is imported inside each command, so that `pix2pix --help` loads no torch


def cmd_push(args: argparse.Namespace) -> int:
    from ..hub.huggingface import push, read_metrics, stage, with_run_training
    from ..inference.predict import Pix2Pix

    model = with_run_training(Pix2Pix.load(args.model), args.model)
    metrics = read_metrics(args.model, args.metrics)
    if args.dry_run is not None or args.stage_dir:
        # --dry-run DIR: the old spelling of --dry-run --stage-dir DIR
        keep = args.stage_dir or args.dry_run or None
        with tempfile.TemporaryDirectory(prefix="pix2pix-push-") as tmp:
            folder = Path(keep) if keep else Path(tmp) / "upload"
            files = stage(model, folder, args.repo_id, metrics, args.license)
            visibility = "private" if args.private else "public"
            where = f", written into {folder}" if keep else " (--stage-dir DIR keeps the files)"
            print(f"would upload to {args.repo_id} ({visibility}){where}:")
            for path in files:
                print(f"  {path.name:24s} {path.stat().st_size:>12,} bytes")
        print(f"nothing was uploaded; without --dry-run: pix2pix push {args.model} {args.repo_id}")
        return 0
    if args.quiet:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    url = push(model, args.repo_id, args.private, args.token, metrics, args.license)
    print(f"uploaded {args.model} to {args.repo_id}: {url}")
    return 0


def cmd_download_model(args: argparse.Namespace) -> int:
    from ..hub.published import PUBLISHED, download_model, model_url, published_size

    if args.list:
        print(f"{'name':22s} {'task':38s} {'direction':9s} {'dataset':12s} size")
        for m in PUBLISHED.values():
            print(f"{m.name:22s} {m.task:38s} {m.direction:9s} {m.dataset:12s} {published_size(m) / 1e6:.0f} MB")
        first = next(iter(PUBLISHED.values()))
        print(
            f"from {model_url('NAME', args.url)} (the reference code's published generators, "
            f"{first.arch}, {first.norm} norm)"
        )
        return 0
    if not args.name:
        raise ValueError("download-model needs a NAME (pix2pix download-model --list shows them)")
    folder = download_model(
        args.name, args.dest, args.url, args.sha256, args.overwrite, args.keep_file, progress=not args.quiet
    )
    config = json.loads((folder / "config.json").read_text())
    print(f"translate with: pix2pix translate --model {folder} INPUT... --out DIR  (direction {config['direction']})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="upload a model folder to the Hugging Face Hub (with a generated model card)")
    p.add_argument("model", metavar="MODEL", help="model folder or run directory")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub repository, user/name (created if absent)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--dry-run",
        nargs="?",
        const="",
        metavar="DIR",
        help="list what would be uploaded (staged in a temporary folder) and upload nothing; "
        "--dry-run DIR is the old spelling of --dry-run --stage-dir DIR",
    )
    p.add_argument(
        "--stage-dir",
        metavar="DIR",
        help="with --dry-run: write the files into DIR (empty or new) and keep them there",
    )
    p.add_argument(
        "--metrics",
        metavar="FILE",
        help="metrics.json of `pix2pix evaluate` for the card (default: a metrics.json in MODEL, if any)",
    )
    p.add_argument("--license", default="other", help="license id for the card's metadata (default: other)")
    p.add_argument("--token", help="Hub token (default: huggingface_hub's login or $HF_TOKEN)")
    add_quiet(p, "no upload progress bars")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser(
        "download-model",
        help="download one of the reference code's published generators and convert it into a model folder",
    )
    p.add_argument(
        "name", metavar="NAME", nargs="?", help="facades_label2photo, sat2map, map2sat, edges2shoes, day2night"
    )
    p.add_argument("--list", action="store_true", help="list the published models and exit")
    p.add_argument("--dest", default="models", help="folder to write DEST/NAME into (default: models)")
    p.add_argument("--url", help="base URL of a mirror (NAME.pth is appended) or a .pth URL; also $PIX2PIX_MODELS_URL")
    p.add_argument("--sha256", help="expected SHA-256 of the .pth (the authors publish none)")
    add_overwrite(p, "replace an existing DEST/NAME", force_alias=True)
    p.add_argument("--keep-file", action="store_true", help="keep the downloaded .pth beside the model folder")
    add_quiet(p)
    p.set_defaults(func=cmd_download_model)
