"""CLI of `pix2pix evaluate` (and `evaluate train-segmenter`) and `pix2pix reproduce`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import EVAL_TASKS as TASKS
from ..paper import SETS
from .flags import add_overwrite, add_quiet, seed

# the library is imported inside each command, so that `pix2pix --help` loads no torch


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate_folders, evaluate_model

    perceptual = [m for m in (args.perceptual or "").split(",") if m]
    if args.real or args.fake:
        if not (args.real and args.fake) or args.model or args.data:
            raise ValueError(
                "pix2pix evaluate --real DIR --fake DIR scores two folders: give both, without --model/--data"
            )
        task = "image" if args.task == "auto" else args.task
        result = evaluate_folders(
            args.real, args.fake, args.out, size=args.size or 256, task=task, labels=args.labels,
            segmenter=args.segmenter, palette=args.palette, gallery=args.gallery, absent=args.absent,
            perceptual=perceptual, weights=args.weights_dir, device=args.device, overwrite=args.overwrite,
            progress=not args.quiet,
        )  # fmt: skip
        return _print_result(
            result, f"{args.fake} against {args.real}", Path(args.out) if args.out else None, args.json
        )
    if not args.model or not args.data:
        raise ValueError(
            "pix2pix evaluate needs --model PATH and --data DIR, or --real DIR --fake DIR (or a subcommand: "
            "train-segmenter)"
        )
    out = Path(args.out or Path(args.model) / f"eval-{args.split}")
    result = evaluate_model(
        args.model,
        args.data,
        out,
        size=args.size,
        split=args.split,
        task=args.task,
        segmenter=args.segmenter,
        palette=args.palette,
        mode=args.mode,
        seed=args.seed,
        gallery=args.gallery,
        absent=args.absent,
        limit=args.limit,
        perceptual=perceptual,
        weights=args.weights_dir,
        device=args.device,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    return _print_result(result, f"{args.data} ({args.split})", out, args.json)


def _print_result(result: dict, what: str, out: Path | None, as_json: bool = False) -> int:
    """The metrics as a table (or, `as_json`, metrics.json's contents), and where they were written."""
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['images']} images of {what} at {result['size']} px, task {result['task']}")
    for group, title in (
        ("segmentation", "labels vs ground truth"),
        ("fcn", "FCN-score, generated photos"),
        ("fcn_ground_truth", "FCN-score, real photos (ground truth)"),
    ):
        if group in result:
            s = result[group]
            print(
                f"  {title}: per-pixel acc {s['pixel_acc']:.3f}  per-class acc {s['class_acc']:.3f}  "
                f"class IoU {s['class_iou']:.3f}"
            )
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in result["image"].items()))
    if "perceptual" in result:
        shown = {k: v for k, v in result["perceptual"].items() if isinstance(v, float)}
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    if "color" in result:
        print("  histogram intersection " + "  ".join(f"{k[5:]} {v:.3f}" for k, v in result["color"].items()))
    if out is not None:
        print(f"wrote {out / 'metrics.json'} and {out / 'index.html'}")
    return 0


def cmd_train_segmenter(args: argparse.Namespace) -> int:
    from ..evaluation.segmenter import train_segmenter

    out = Path(args.out)
    if (out / "config.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a model; choose another --out or pass --overwrite")
    result = train_segmenter(
        args.data,
        out,
        size=args.size,
        steps=args.steps,
        batch_size=args.batch_size,
        channels=args.channels,
        seed=args.seed,
        palette=args.palette,
        device=args.device,
        progress=not args.quiet,
    )
    val = result["val"]
    print(
        f"segmenter: {result['steps']} steps in {result['seconds']:.0f} s; on the real val photos: per-pixel acc "
        f"{val['pixel_acc']:.3f}  per-class acc {val['class_acc']:.3f}  class IoU {val['class_iou']:.3f}"
    )
    print(f"wrote {out} (use it with: pix2pix evaluate --segmenter {out} ...)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..experiments.reproduce import reproduce

    if args.list:
        for name, exp in SETS.items():
            print(f"{name:13s} {exp.title}")
        print(f"{'colorization':13s} seed 003: plain pix2pix colorization vs the ResNet-18 U-Net (--data PHOTOS)")
        return 0
    if args.status:
        from ..experiments.reproduce import status

        if args.name and args.name not in SETS:
            raise ValueError(f"--status: unknown set {args.name!r}; choose one of {', '.join(SETS)}")
        names = [args.name] if args.name else None
        print("\n".join(status(args.out, args.protocol, names, _parse_settings(args.set))))
        return 0
    if not args.name or not args.data:
        raise ValueError("pix2pix reproduce needs NAME and --data DIR (see --list)")
    if args.name == "colorization":
        from ..experiments.reproduce_color import reproduce_colorization

        path = reproduce_colorization(
            args.data,
            args.out,
            protocol=args.protocol,
            encoder=args.encoder_weights,
            photo_half=args.photo_half,
            device=args.device,
            extra=_parse_settings(args.set),
            weights=args.weights,
            progress=not args.quiet,
            train_only=args.train_only,
        )
        if path is not None:
            print(path.read_text())
        return 0
    if args.encoder_weights or args.photo_half != "none":
        raise ValueError("--encoder-weights and --photo-half are options of `pix2pix reproduce colorization`")
    path = reproduce(
        args.name,
        args.data,
        args.out,
        protocol=args.protocol,
        segmenter=args.segmenter,
        device=args.device,
        extra=_parse_settings(args.set),
        progress=not args.quiet,
        train_only=args.train_only,
    )
    if path is None:
        return 0
    print(path.read_text())
    report = json.loads(path.with_suffix(".json").read_text())
    print(f"report: {path} ({len(report['rows'])} rows)")
    return 0


def _parse_settings(items: list[str] | None) -> dict[str, object]:
    """--set KEY=VALUE (config field names, dashes or underscores), values typed as the field."""
    from ..config import FIELDS as fields

    settings: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise ValueError(
                f"--set {item!r}: expected KEY=VALUE with KEY a training option (see pix2pix train --help)"
            )
        kind = type(fields[key].default)
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"--set {item!r}: {key} takes true or false")
            settings[key] = value.lower() in ("true", "1")
        else:
            try:
                settings[key] = kind(value)
            except ValueError:
                raise ValueError(f"--set {item!r}: {key} takes a {kind.__name__}") from None
    return settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a model the paper's way (Tables 1-3, 6, Figure 7), or train the FCN-score segmenter"
    )
    p.add_argument("--model", help="model folder or run dir")
    p.add_argument("--data", help="paired dataset folder (aligned layout)")
    p.add_argument(
        "--real", metavar="DIR", help="with --fake: score two folders of images, no model (e.g. ONNX outputs)"
    )
    p.add_argument(
        "--fake", metavar="DIR", help="images to score against --real, matched by relative path (extension aside)"
    )
    p.add_argument("--labels", metavar="DIR", help="with --real/--fake and --task label2photo: the input label maps")
    p.add_argument("--split", default="val", help="which split folder to score (default val, the paper's test set)")
    p.add_argument(
        "--out",
        help="where metrics.json and index.html go (default: MODEL/eval-SPLIT; with --real/--fake: none, "
        "the metrics are printed)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (metrics.json's contents)")
    p.add_argument(
        "--task",
        choices=TASKS,
        default="auto",
        help="photo2label: outputs are label maps (Table 6); label2photo: FCN-score with --segmenter "
        "(Tables 1-3); image: image metrics only; auto: label2photo with --segmenter, else image",
    )
    p.add_argument("--segmenter", help="segmenter model folder for the FCN-score (pix2pix evaluate train-segmenter)")
    p.add_argument("--palette", default="cityscapes", help="label palette: cityscapes, facades or a JSON file")
    p.add_argument(
        "--size", type=int, help="score at SIZE x SIZE (default: the model's training size; 256 for folders)"
    )
    add_quiet(p)
    p.add_argument(
        "--mode",
        choices=("paper", "eval"),
        default="paper",
        help="generator mode (paper: dropout on, batch-1 statistics)",
    )
    p.add_argument("--seed", type=seed, default=0, help="dropout noise seed (image i uses seed + i)")
    p.add_argument("--gallery", type=int, default=30, help="images shown in index.html")
    p.add_argument(
        "--absent",
        choices=("zero", "ignore"),
        default="zero",
        help="classes absent from the ground truth: count 0 in the means (pix2pix's formula) or leave them out",
    )
    p.add_argument("--limit", type=int, help="score only the first N pairs (quick checks)")
    p.add_argument(
        "--perceptual",
        metavar="fid,kid,lpips",
        help="also FID / KID / LPIPS, only with the standard weight files (checked by hash) in --weights-dir",
    )
    p.add_argument(
        "--weights-dir",
        help="folder of the standard weight files (default $PIX2PIX_WEIGHTS or ~/.cache/pix2pix/weights)",
    )
    p.add_argument("--device", default="auto")
    add_overwrite(p, "replace an earlier evaluation in --out (whole)")
    p.set_defaults(func=cmd_evaluate)
    eval_sub = p.add_subparsers(dest="evaluate_command", required=False, metavar="COMMAND")
    s = eval_sub.add_parser(
        "train-segmenter", help="train the FCN-score segmenter on real photos (deterministic recipe)"
    )
    s.add_argument("--data", required=True, help="aligned set whose left half is the photo, right the colour label map")
    s.add_argument("--out", required=True, help="model folder to write")
    s.add_argument("--size", type=int, default=256, help="photo size (the paper scored at 256)")
    s.add_argument("--steps", type=int, help="training steps (default: 20 epochs of the training split)")
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--channels", type=int, default=32, help="U-Net filters in the first layer")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--palette", default="cityscapes")
    s.add_argument("--device", default="auto")
    add_overwrite(s, "replace a segmenter already in --out")
    add_quiet(s)
    s.set_defaults(func=cmd_train_segmenter)

    p = sub.add_parser("reproduce", help="train and score one of the paper's experiment sets; write a report")
    p.add_argument("name", nargs="?", help=f"one of: {', '.join([*SETS, 'colorization'])} (--list: what each is)")
    p.add_argument("--list", action="store_true", help="list the experiment sets")
    p.add_argument(
        "--data",
        help="Cityscapes in the pix2pix aligned layout (photo | label map); colorization: a folder of colour "
        "photos (train/ and val/, or one folder: 10%% held out), or aligned pairs with --photo-half",
    )
    p.add_argument(
        "--photo-half",
        choices=("none", "left", "right"),
        default="none",
        help="colorization: the photo is this half of each aligned pair (Cityscapes, maps: left)",
    )
    p.add_argument(
        "--encoder-weights",
        metavar="FILE",
        help="colorization: torchvision's ImageNet ResNet-18 (resnet18-f37072fd.pth) for the enhanced model's "
        "encoder; without it the encoder trains from scratch and the report says so",
    )
    p.add_argument("--weights", metavar="DIR", help="colorization: folder of the standard FID Inception weights")
    p.add_argument(
        "--protocol",
        choices=("full", "reduced"),
        default="reduced",
        help="full: the paper's (GPU); reduced: about 2 h on a 2-core CPU",
    )
    p.add_argument("--out", default="reproduce", help="folder for runs and reports; the same command resumes")
    p.add_argument("--segmenter", help="FCN-score segmenter (default: trained into OUT by the recipe)")
    p.add_argument(
        "--train-only", action="store_true", help="train the rows that are not trained yet, then stop (no scoring)"
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="say, for every row of NAME (or of every set) in --out, whether it is scored, trained, being "
        "trained and by which process, or stopped at a step; trains nothing",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="change a training option of every row (e.g. workers=0); the report lists it",
    )
    p.add_argument("--device", default="auto")
    add_quiet(p)
    p.set_defaults(func=cmd_reproduce)
