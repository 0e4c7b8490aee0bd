"""`pix2pix translate`, `export`, `import-reference` and `serve`: using a trained model. Nothing
here imports the training code."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .flags import add_overwrite, add_quiet, seed

# the library is imported inside each command, so that `pix2pix --help` loads no torch


def cmd_translate(args: argparse.Namespace) -> int:
    from ..data.device import resolve_device
    from ..inference.predict import Pix2Pix

    # ONNX graphs are exported in eval mode, so that is the onnxruntime backend's only mode
    mode = args.mode or ("eval" if args.backend == "onnxruntime" else "paper")
    if args.backend == "onnxruntime":
        if mode == "paper":
            raise ValueError(
                "--mode paper (dropout on, test-batch statistics) needs --backend torch: ONNX models are "
                "exported in eval mode; drop --mode or pass --mode eval"
            )
        from ..inference.export import load_onnx

        model = load_onnx(args.model, device=args.device)
    else:
        if Path(args.model).suffix == ".onnx":
            raise ValueError(f"{args.model} is an ONNX file: pass --backend onnxruntime")
        model = Pix2Pix.from_pretrained(args.model, device=resolve_device(args.device))
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
        tile=args.tile,
        overlap=args.overlap,
        max_memory=int(args.max_memory * 2**30),
        max_pixels=args.max_pixels,
        log=lambda line: print(line, file=sys.stderr),
        progress=not args.quiet,
    )
    print(f"wrote {len(written)} image(s) to {args.out}")
    if args.html:
        from ..inference.predict import write_index

        pick = model.input_half if half == "input" else half
        print(f"wrote {write_index(args.inputs, args.out, pick)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..data.images import is_image_file, list_images
    from ..inference.export import (
        EXPORT_PACKAGES,
        ONNX_OPSET,
        RUNTIME_PACKAGES,
        OnnxGenerator,
        check_parity,
        export_onnx,
        require,
    )
    from ..inference.generator import size_multiple
    from ..inference.predict import Pix2Pix

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
    model = Pix2Pix.from_pretrained(args.model)
    opset = args.opset or ONNX_OPSET
    export_onnx(model.generator, model.config, out, opset=opset)
    multiple = size_multiple(model.generator)
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, opset {opset}, eval mode): "
        f"dynamic batch, height and width (multiples of {multiple})"
    )
    if not check:
        return 0
    results = check_parity(model.generator, OnnxGenerator(out), images=images, progress=not args.quiet)
    for r in results:
        shape = "x".join(map(str, r.shape))
        verdict = "ok  " if r.ok else "FAIL"
        diff = f"max |onnxruntime - torch| = {r.max_abs_diff:.2e} (tolerance {r.tolerance:.1e})"
        print(f"  {verdict} {diff}  {shape}  {r.source}")
    worst = max(r.max_abs_diff for r in results)
    failed = [r for r in results if not r.ok]
    if failed:
        r = failed[0]
        print(f"pix2pix: error: parity check failed: {r.max_abs_diff:.2e} >= {r.tolerance:.2g}", file=sys.stderr)
        return 1
    print(f"parity ok: {len(results)} inputs, max difference {worst:.2e}, each below its tolerance")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The browser demo: a drawing page and the /translate API on --host:--port."""
    from ..data.device import resolve_device
    from ..inference.predict import Pix2Pix
    from ..serve import Limits, make_server, model_name

    limits = Limits(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        max_pixels=args.max_pixels,
        max_queue=args.max_queue,
        queue_seconds=args.queue_timeout,
        read_seconds=args.read_timeout,
        tile=args.tile,
    )
    model = Pix2Pix.from_pretrained(args.model, device=resolve_device(args.device))
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
    from ..hub.reference import import_reference

    config = import_reference(
        args.file, args.out, args.arch, args.norm, args.direction, dropout=args.dropout, overwrite=args.overwrite
    )
    g = config.generator
    print(
        f"wrote {args.out}: {args.arch} ({config.architecture}, ngf {g['base_channels']}, "
        f"{g['in_channels']} -> {g['out_channels']} channels, {args.norm} norm, dropout {g['dropout']}), "
        f"direction {config.direction}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    for add in (_register_translate, _register_export, _register_import_reference, _register_serve):
        add(sub)


def _register_translate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("translate", help="translate images of any size with a trained model")
    p.add_argument(
        "--model",
        required=True,
        help="model folder (config.json + model.safetensors), run dir, or Hub repository id (user/name)",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder (PNG files, same size as the inputs)")
    p.add_argument(
        "--mode",
        choices=("paper", "eval"),
        default=None,
        help="paper: dropout on + test-batch statistics (section 3.3); eval: deterministic "
        "(default: paper with --backend torch, eval with onnxruntime, its only mode)",
    )
    p.add_argument("--seed", type=seed, default=None, help="seed of the dropout noise in paper mode")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (eval mode)")
    p.add_argument(
        "--half",
        choices=("whole", "left", "right", "input"),
        default="whole",
        help="use the whole image, or one half of an aligned pair",
    )
    p.add_argument("--aligned", action="store_true", help="inputs are aligned pairs: use the model's input half")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    add_overwrite(p, "replace existing files in --out")
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
    p.add_argument("--html", action="store_true", help="also write OUT/index.html: input | output (| target) per image")
    add_quiet(p)
    _add_tiling_flags(p)
    p.set_defaults(func=cmd_translate)


def _add_tiling_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tile",
        type=_whole_number,
        default=None,
        help="translate in overlapping tiles of this many px (rounded up to the generator's size multiple), "
        "blended with a cosine window; 0 never tiles (default: tile only images whose untiled pass would "
        "take more than --max-memory, in tiles that a third of it holds)",
    )
    p.add_argument("--overlap", type=_whole_number, default=64, help="px shared by neighbouring tiles (default 64)")
    p.add_argument(
        "--max-memory",
        type=float,
        default=3.0,
        metavar="GIB",
        help="GiB an untiled pass may take before the image is tiled automatically (default 3)",
    )
    p.add_argument(
        "--max-pixels",
        type=_whole_number,
        default=None,
        help="refuse inputs whose header claims more pixels, before decoding (default 256,000,000)",
    )


def _whole_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model's generator to ONNX (eval mode, dynamic batch and size)")
    p.add_argument(
        "--model",
        required=True,
        help="model folder (config.json + model.safetensors), run dir, or Hub repository id (user/name)",
    )
    p.add_argument("--format", choices=("onnx",), default="onnx", help="output format")
    p.add_argument("out", metavar="OUT", help="the file to write, e.g. model.onnx")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 18)")
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
    add_overwrite(p, "replace OUT if it exists")
    add_quiet(p, "no progress bar for --check")
    p.set_defaults(func=cmd_export)


def _register_import_reference(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-reference",
        help="convert a generator trained with the reference PyTorch code (latest_net_G.pth) into a model folder",
    )
    p.add_argument("file", metavar="FILE", help="the reference's *_net_G.pth (a state dict)")
    p.add_argument("out", metavar="OUT", help="model folder to write (config.json + model.safetensors + README.md)")
    p.add_argument(
        "--arch",
        required=True,
        choices=("unet_256", "unet_128", "resnet_9blocks", "resnet_6blocks"),
        help="the reference's --netG",
    )
    p.add_argument(
        "--norm",
        required=True,
        choices=("batch", "instance", "none"),
        help="the reference's --norm (its none models have no conv biases; read as such)",
    )
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
    add_overwrite(p, "replace a model already in OUT")
    p.set_defaults(func=cmd_import_reference)


def _register_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="browser demo: draw or upload an input, see the translation beside it")
    p.add_argument(
        "--model",
        required=True,
        help="model folder (config.json + model.safetensors), run dir, or Hub repository id (user/name)",
    )
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
    p.add_argument(
        "--tile",
        type=int,
        default=512,
        help="uploads larger on a side go in tiles of at most this many px, other requests running "
        "between tiles (default 512)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    add_quiet(p, "do not log each request")
    p.set_defaults(func=cmd_serve)
