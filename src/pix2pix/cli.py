"""The `pix2pix` command: subcommands that map flags onto TrainConfig and the library functions.

pix2pix train --data DIR [--direction BtoA] [--preset NAME] [--run-dir DIR] [any config flag]
pix2pix train --resume RUN_DIR [--max-steps N]
pix2pix translate --model PATH INPUT... --out DIR [--mode paper|eval] [--seed N] [--backend onnxruntime]
pix2pix export --model PATH --format onnx OUT.onnx [--check]
pix2pix import-reference latest_net_G.pth --arch unet_256 --norm batch OUT_DIR
pix2pix serve --model PATH [--palette cityscapes|facades|none] [--port 8000]
pix2pix demo            # train on the built-in shapes data, then translate with the model
pix2pix presets         # list the shipped paper presets
pix2pix study create|serve|report   # the AMT "real vs fake" study of Tables 4-5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import FIELDS, FILE_ORDER, TrainConfig, list_presets, load_preset
from .data.commands import register as register_layout_commands
from .data.task_commands import register as register_task_commands
from .evaluation_commands import register as register_evaluation_commands
from .export import ONNX_OPSET, MissingExtraError
from .study.commands import register as register_study_commands


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field, default None so we know which the user gave."""
    group = parser.add_argument_group("run configuration (defaults: the paper's; a preset may change them)")
    for key in FILE_ORDER:
        f = FIELDS[key]
        flag = "--" + key.replace("_", "-")
        names = [flag, "--lambda"] if key == "lambda_l1" else [flag]
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if isinstance(f.default, bool):
            group.add_argument(*names, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(
                *names,
                dest=key,
                type=type(f.default),
                default=None,
                choices=f.metadata.get("choices"),
                help=help_text,
            )


def _given_config(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, key) for key in FILE_ORDER if getattr(args, key) is not None}


def cmd_train(args: argparse.Namespace) -> int:
    from .train import config_for_resume, train

    overrides = _given_config(args)
    if args.resume:
        if args.preset:
            raise ValueError("--resume continues a run with its saved config; drop --preset")
        cfg = config_for_resume(args.resume, overrides)
        run_dir = Path(args.resume)
    else:
        values = load_preset(args.preset) if args.preset else {}
        values.update(overrides)
        cfg = TrainConfig.from_dict(values, f"preset {args.preset}" if args.preset else "flags")
        name = args.preset or (Path(cfg.run.data).name if cfg.run.data else "run")
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / name.replace(":", "_")
    summary = train(cfg, run_dir, resume=bool(args.resume), overwrite=args.overwrite, progress=not args.no_progress)
    if summary["rank"] != 0:  # under torchrun, rank 0 reports for all processes
        return 130 if summary["interrupted"] else 0
    losses = ", ".join(f"{k} {v:.4f}" for k, v in summary["losses"].items())
    if summary["interrupted"]:
        print(f"stopped at step {summary['step']}; checkpoint saved. Continue with: pix2pix train --resume {run_dir}")
        return 130
    print(f"trained {summary['step']} steps in {summary['seconds']:.1f} s ({losses})")
    print(f"model: {summary['model']}   samples: {run_dir / 'samples'}   log: {run_dir / 'log.jsonl'}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    from .predict import Pix2Pix, resolve_device

    # ONNX graphs are exported in eval mode, so that is the onnxruntime backend's only mode
    mode = args.mode or ("eval" if args.backend == "onnxruntime" else "paper")
    if args.backend == "onnxruntime":
        if mode == "paper":
            raise ValueError(
                "--mode paper (dropout on, test-batch statistics) needs --backend torch: ONNX models are "
                "exported in eval mode; drop --mode or pass --mode eval"
            )
        from .export import load_onnx

        model = load_onnx(args.model, device=args.device)
    else:
        if Path(args.model).suffix == ".onnx":
            raise ValueError(f"{args.model} is an ONNX file: pass --backend onnxruntime")
        model = Pix2Pix.load(args.model, device=resolve_device(args.device))
    half = "input" if args.aligned else args.half
    written = model.translate_files(
        args.inputs,
        args.out,
        mode=mode,
        seed=args.seed,
        batch_size=args.batch_size,
        half=half,
        overwrite=args.overwrite,
        bit_depth=args.bit_depth,
    )
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .data.images import is_image_file, list_images
    from .export import (
        EXPORT_PACKAGES,
        PARITY_TOLERANCE,
        RUNTIME_PACKAGES,
        OnnxGenerator,
        check_parity,
        export_onnx,
        require,
    )
    from .predict import Pix2Pix, size_multiple

    check = args.check or bool(args.check_images)
    require(EXPORT_PACKAGES + (RUNTIME_PACKAGES if check else ()), "pix2pix export")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; choose another path or pass --overwrite")
    images: list[Path] = []
    for item in map(Path, args.check_images or []):
        if item.is_dir():
            found = list_images(item)
            images += found[: args.check_count]  # a sample: the parity, not the dataset, is checked
        elif item.is_file() and is_image_file(item):
            images.append(item)
        else:
            raise FileNotFoundError(f"{item}: not an image file or a folder of images")
    model = Pix2Pix.load(args.model)
    export_onnx(model.generator, model.config, out, opset=args.opset)
    multiple = size_multiple(model.generator)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {args.opset}, eval mode): "
        f"dynamic batch, height and width (multiples of {multiple})"
    )
    if not check:
        return 0
    results = check_parity(model.generator, OnnxGenerator(out), images=images)
    for r in results:
        shape = "x".join(map(str, r.shape))
        print(f"  {'ok  ' if r.ok else 'FAIL'} max |onnxruntime - torch| = {r.max_abs_diff:.2e}  {shape}  {r.source}")
    worst = max(r.max_abs_diff for r in results)
    if worst >= PARITY_TOLERANCE:
        print(f"pix2pix: error: parity check failed: {worst:.2e} >= {PARITY_TOLERANCE:g}", file=sys.stderr)
        return 1
    print(f"parity ok: {len(results)} inputs, max difference {worst:.2e} < {PARITY_TOLERANCE:g}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The browser demo: a drawing page and the /translate API on --host:--port."""
    from .predict import Pix2Pix, resolve_device
    from .serve import Limits, make_server, model_name

    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        queue_seconds=args.queue_timeout,
        read_seconds=args.read_timeout,
    )
    model = Pix2Pix.load(args.model, device=resolve_device(args.device))
    server = make_server(
        model,
        args.host,
        args.port,
        palette=args.palette,
        limits=limits,
        name=model_name(args.model),
        log_requests=not args.quiet,
    )
    if not server.loopback_only:
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine can use the demo "
            "(it has no authentication)",
            file=sys.stderr,
        )
    palette = server.translator.palette
    print(f"serving {args.model} ({'palette ' + palette['name'] if palette else 'no palette'}) at {server.url}")
    print("Ctrl-C stops the server", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


def cmd_import_reference(args: argparse.Namespace) -> int:
    from .reference import import_reference

    config = import_reference(
        args.file, args.out, args.arch, args.norm, args.direction, dropout=args.dropout, overwrite=args.overwrite
    )
    g = config["generator"]
    print(
        f"wrote {args.out}: {args.arch} ({config['architecture']}, ngf {g['base_channels']}, "
        f"{g['in_channels']} -> {g['out_channels']} channels, {args.norm} norm, dropout {g['dropout']}), "
        f"direction {config['direction']}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's first command: a short run on builtin:shapes, then translate its val set."""
    from .predict import Pix2Pix
    from .train import train

    values = load_preset("shapes")
    if args.max_steps:
        values["max_steps"] = args.max_steps
    cfg = TrainConfig.from_dict(values, "preset shapes")
    run_dir = Path(args.run_dir)
    summary = train(cfg, run_dir, overwrite=args.overwrite, progress=not args.no_progress)
    model = Pix2Pix.load(run_dir / "model")
    out = run_dir / "translated"
    written = model.translate_files([run_dir / "data" / "val"], out, half="input", seed=0, overwrite=True)
    print(f"trained {summary['step']} steps in {summary['seconds']:.0f} s on builtin:shapes")
    print(f"samples (input | output | target): {run_dir / 'samples'}")
    print(f"model: {run_dir / 'model'}; translated {len(written)} val images into {out}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import tomllib
    from importlib import resources

    for name in list_presets():
        text = (resources.files("pix2pix") / "presets" / f"{name}.toml").read_text()
        description = tomllib.loads(text).get("description", "")
        print(f"{name:28s} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pix2pix", description="Paired image-to-image translation (Isola et al. 2016)."
    )
    parser.add_argument("--version", action="version", version=f"pix2pix {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model (or resume a run)")
    p.add_argument("--preset", help="a shipped preset (see `pix2pix presets`) or a .toml file")
    p.add_argument("--run-dir", help="where the run is written (default: runs/<preset or data name>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in --run-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("translate", help="translate images of any size with a trained model")
    p.add_argument("--model", required=True, help="model folder (config.json + generator.safetensors) or run dir")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (PNG files, same size as the inputs)")
    p.add_argument(
        "--mode",
        choices=("paper", "eval"),
        default=None,
        help="paper: dropout on + test-batch statistics (section 3.3); eval: deterministic "
        "(default: paper with --backend torch, eval with onnxruntime, its only mode)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the dropout noise in paper mode")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (eval mode)")
    p.add_argument(
        "--half",
        choices=("whole", "left", "right", "input"),
        default="whole",
        help="use the whole image, or one half of an aligned pair",
    )
    p.add_argument("--aligned", action="store_true", help="inputs are aligned pairs: use the model's input half")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--overwrite", action="store_true", help="replace existing files in --out")
    p.add_argument(
        "--bit-depth",
        type=int,
        choices=(8, 16),
        default=8,
        help="bits per sample of the PNG outputs; 16 keeps the generator's float output finer (default 8)",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="torch: --model is a model folder; onnxruntime: --model is an .onnx file from `pix2pix export`",
    )
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("export", help="export a model's generator to ONNX (eval mode, dynamic batch and size)")
    p.add_argument("--model", required=True, help="model folder (config.json + generator.safetensors) or run dir")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format")
    p.add_argument("out", metavar="OUT", help="the file to write, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=ONNX_OPSET, help=f"ONNX opset (default: {ONNX_OPSET})")
    p.add_argument(
        "--check",
        action="store_true",
        help="compare ONNX Runtime with PyTorch (eval mode) on random inputs at two sizes; fails above 1e-4",
    )
    p.add_argument(
        "--check-images",
        nargs="+",
        metavar="PATH",
        help="also compare on these images (files, or folders: their first --check-count images); implies --check",
    )
    p.add_argument("--check-count", type=int, default=4, help="images taken from each --check-images folder")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import-reference",
        help="convert a generator trained with the reference PyTorch code (latest_net_G.pth) into a model folder",
    )
    p.add_argument("file", metavar="FILE", help="the reference's *_net_G.pth (a state dict)")
    p.add_argument("out", metavar="OUT", help="model folder to write (config.json + generator.safetensors)")
    p.add_argument(
        "--arch",
        required=True,
        choices=("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks"),
        help="the reference's --netG",
    )
    p.add_argument("--norm", required=True, choices=("batch", "instance"), help="the reference's --norm")
    p.add_argument(
        "--direction", choices=("AtoB", "BtoA"), default="AtoB", help="the training direction (not in the file)"
    )
    p.add_argument(
        "--dropout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="G was built with dropout (--no-dropout: the reference's --no_dropout, e.g. CycleGAN); "
        "default: on for U-Nets (the reference's pix2pix default), read from the weights for ResNets",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a model already in OUT")
    p.set_defaults(func=cmd_import_reference)

    p = sub.add_parser("serve", help="browser demo: draw or upload an input, see the translation beside it")
    p.add_argument("--model", required=True, help="model folder (config.json + generator.safetensors) or run dir")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument(
        "--palette",
        choices=("cityscapes", "facades", "none"),
        default=None,
        help='class palette for drawing label maps (default: the model config\'s "palette" key, else none)',
    )
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted upload in MiB")
    p.add_argument(
        "--max-pixels", type=int, default=16_000_000, help="largest accepted image in pixels, checked before decoding"
    )
    p.add_argument(
        "--max-queue", type=int, default=8, help="translations admitted at once; more get 503 + Retry-After (default 8)"
    )
    p.add_argument(
        "--queue-timeout", type=float, default=30.0, help="seconds a request may wait for its turn (default 30)"
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=30.0,
        help="seconds a client may take to send a whole request (default 30)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="train briefly on the built-in shapes data and translate with the result")
    p.add_argument("--run-dir", default="runs/shapes")
    p.add_argument("--max-steps", type=int, default=0, help="shorter or longer than the preset's run")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="check and prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    register_layout_commands(data_sub)
    register_task_commands(data_sub)

    p = sub.add_parser("study", help='"real vs fake" perceptual study (Tables 4-5): create, serve, report')
    study_sub = p.add_subparsers(dest="study_command", required=True, metavar="COMMAND")
    register_study_commands(study_sub)

    register_evaluation_commands(sub)

    p = sub.add_parser("presets", help="list the shipped presets (paper experiments)")
    p.set_defaults(func=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (resume with pix2pix train --resume RUN_DIR)", file=sys.stderr)
        return 130
    except (ValueError, OSError, MissingExtraError) as err:
        # our errors (DatasetError, ImageError, RunDirError, CheckpointError, bad configs) are
        # ValueErrors naming the file or key; OSError covers missing or unwritable paths;
        # MissingExtraError names the optional packages and the pip command that installs them
        print(f"pix2pix: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
