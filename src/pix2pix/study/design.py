"""Preparing a "real vs fake" perceptual study (the paper's AMT studies, Tables 4 and 5).

`create_study` matches real and generated images by name, draws the session templates (which
images each session shows, in which order, the fake on which side) from a seed, and copies the
images into one self-contained folder:

    STUDY/
      study.json               settings, methods, templates (everything the server needs)
      images/real/<name>.png   the real images that have a counterpart in every method
      images/fake/<method>/... each method's generated images
      sessions.jsonl           written by `pix2pix study serve`: one line per session started
      responses.jsonl          written by `pix2pix study serve`: one line per answer

Pairing (section 4.1): `same` shows the real image and the fake made from the same input (the
paper's colorization study); `different` pairs a real image with a fake made from another input
(the paper's maps study, "to make the task more difficult"). With `different` no image appears
twice in one session: a session of n trials draws 2n inputs, n for the real side and n others for
the fake side.

Every method uses the same templates, so method k's session t shows exactly the images (and
sides) of method j's session t: methods are compared on the same inputs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .protocol import PAIRINGS, QUESTION, Protocol, StudyError

STUDY_FORMAT = "pix2pix-study"
STUDY_VERSION = 1
STUDY_FILE = "study.json"
SIDES = ("left", "right")
# formats every browser shows; anything else is re-encoded as PNG
WEB_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
SOURCE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class Trial:
    """One trial of a session: the real and the fake image (paths relative to the study folder)."""

    index: int  # position in the session, practice trials first
    practice: bool
    real: str
    fake: str
    fake_side: str  # "left" or "right"


@dataclass
class Study:
    """A study folder as `create_study` wrote it (see `load_study`)."""

    root: Path
    id: str
    pairing: str
    seed: int
    protocol: Protocol
    methods: list[str]
    real_images: dict[str, str]  # name -> path relative to root
    fake_images: dict[str, dict[str, str]]  # method -> name -> path
    templates: list[dict[str, list[dict[str, str]]]]  # [{"practice": [...], "trials": [...]}]
    question: str = QUESTION
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def template_practice(self) -> int:
        return len(self.templates[0]["practice"])

    @property
    def template_trials(self) -> int:
        return len(self.templates[0]["trials"])

    def check_protocol(self, protocol: Protocol) -> None:
        """Serving may shorten sessions, never lengthen them past the drawn templates."""
        if protocol.practice > self.template_practice or protocol.trials > self.template_trials:
            raise StudyError(
                f"{self.root}: its templates hold {self.template_practice} practice + {self.template_trials} "
                f"trials; cannot serve {protocol.practice} + {protocol.trials} (create the study again with "
                "--practice/--trials)"
            )

    def session_trials(self, method: str, template: int, practice: int, trials: int) -> list[Trial]:
        """The trials of a session of `method` built on template number `template`: its first
        `practice` practice trials, then its first `trials` trials."""
        plan = self.templates[template]
        chosen = [(True, t) for t in plan["practice"][:practice]] + [(False, t) for t in plan["trials"][:trials]]
        fakes = self.fake_images[method]
        return [
            Trial(i, is_practice, self.real_images[t["real"]], fakes[t["fake"]], t["fake_side"])
            for i, (is_practice, t) in enumerate(chosen)
        ]


@dataclass
class CreateSummary:
    study: Path
    matched: int
    methods: dict[str, Path]
    unmatched: dict[str, dict[str, list[str]]]  # method -> {"no_fake": [...], "no_real": [...]}
    warnings: list[str]
    templates: int

    def format(self, limit: int = 10) -> str:
        lines = []
        for method, missing in self.unmatched.items():
            for key, what in (
                ("no_fake", f"real images without a {method!r} image (left out)"),
                ("no_real", f"{method!r} images without a real image (left out)"),
            ):
                names = missing[key]
                if names:
                    shown = ", ".join(names[:limit]) + (
                        f", ... ({len(names) - limit} more)" if len(names) > limit else ""
                    )
                    lines.append(f"unmatched: {len(names)} {what}: {shown}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _collect(folder: Path, role: str) -> dict[str, Path]:
    """name (path relative to `folder`, without extension) -> file, for every image under it."""
    if not folder.is_dir():
        raise StudyError(f"{role} folder {folder} does not exist or is not a folder")
    files: dict[str, Path] = {}
    clashes = []
    for path in sorted(folder.rglob("*")):
        if not (path.is_file() and path.suffix.lower() in SOURCE_EXTENSIONS) or path.name.startswith("."):
            continue
        name = path.relative_to(folder).with_suffix("").as_posix()
        if name in files:
            clashes.append(f"{files[name].name} and {path.name} ({name})")
        files[name] = path
    if clashes:
        raise StudyError(f"{role} folder {folder}: two images share a name: " + "; ".join(clashes))
    if not files:
        raise StudyError(f"{role} folder {folder} holds no images ({', '.join(SOURCE_EXTENSIONS)})")
    return files


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """(PIL format, (width, height)) from the header, or StudyError naming the file."""
    try:
        with Image.open(path) as img:
            return img.format or "", img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise StudyError(f"{path}: not a readable image ({err})") from None


def _slug(name: str, taken: set[str]) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "method"
    base, n = slug, 2
    while slug.lower() in taken:
        slug, n = f"{base}_{n}", n + 1
    taken.add(slug.lower())
    return slug


def _balanced_sides(rng: np.random.Generator, n: int) -> list[str]:
    """n sides, half left and half right (the odd one random), in random order: the fake's side
    carries no information and a side bias cannot move the score."""
    left = n // 2 + (int(rng.integers(2)) if n % 2 else 0)
    return [SIDES[i] for i in rng.permutation([0] * left + [1] * (n - left))]


def draw_templates(
    names: list[str], pairing: str, practice: int, trials: int, count: int, seed: int
) -> list[dict[str, list[dict[str, str]]]]:
    """`count` session templates over the matched image `names`: each a random draw of distinct
    inputs in random order, practice trials first, balanced sides within each phase."""
    n = practice + trials
    needed = n if pairing == "same" else 2 * n
    if len(names) < needed:
        extra = (
            " (pairing 'different' uses 2 inputs per trial so that no image appears twice)" if pairing != "same" else ""
        )
        raise StudyError(
            f"a session of {practice} practice + {trials} trials needs {needed} matched images{extra}; "
            f"found {len(names)}: add images or lower --practice/--trials"
        )
    rng = np.random.default_rng(seed)
    ordered = sorted(names)
    templates = []
    for _ in range(count):
        drawn = [ordered[i] for i in rng.permutation(len(ordered))[:needed]]
        reals, fakes = (drawn, drawn) if pairing == "same" else (drawn[:n], drawn[n:])
        plan: dict[str, list[dict[str, str]]] = {}
        for phase, part in (("practice", slice(0, practice)), ("trials", slice(practice, n))):
            pairs = list(zip(reals[part], fakes[part]))
            sides = _balanced_sides(rng, len(pairs))
            plan[phase] = [{"real": r, "fake": f, "fake_side": s} for (r, f), s in zip(pairs, sides)]
        templates.append(plan)
    return templates


def _place(source: Path, target: Path, size: int, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if size:
        with Image.open(source) as img:
            img.convert("RGB").resize((size, size), Image.Resampling.LANCZOS).save(target, format="PNG")
        return
    fmt, _ = _probe(source)
    if fmt not in WEB_FORMATS:  # TIFF, PPM: browsers cannot show them
        with Image.open(source) as img:
            img.convert("RGB").save(target, format="PNG")
        return
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: copy
            pass
    shutil.copyfile(source, target)


def _target_name(name: str, source: Path, size: int) -> str:
    if size:
        return name + ".png"
    fmt, _ = _probe(source)
    return name + WEB_FORMATS.get(fmt, ".png")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def create_study(
    real: str | Path,
    fakes: list[tuple[str, str | Path]],
    out: str | Path,
    *,
    pairing: str = "same",
    seed: int = 0,
    protocol: Protocol | None = None,
    templates: int = 50,
    overwrite: bool = False,
    link: bool = False,
    size: int = 0,
    strict: bool = False,
) -> CreateSummary:
    """Prepare a study folder `out` from the real images in `real` and one folder of generated
    images per method (`fakes`: [(method name, folder)]), matched by file name without extension
    (relative paths in subfolders).

    Images without a counterpart in every folder are left out and listed in the summary
    (`strict=True` makes that an error). `templates` session templates are drawn (default 50,
    about the paper's number of Turkers per method); participants are spread over them. `size`
    resizes every image to size x size (PNG); otherwise files are copied (or hard-linked with
    `link=True`), and formats browsers cannot show are re-encoded as PNG. An existing `out` is
    never replaced unless `overwrite=True`, and then only if it is a study folder (or empty).

    Example:
        >>> create_study("photos/val", [("L1", "out/l1"), ("L1+cGAN", "out/l1_cgan")], "study",
        ...              pairing="same", seed=0)  # doctest: +SKIP
    """
    protocol = protocol or Protocol()
    out = Path(out)
    _check_create(out, fakes, pairing, templates, size, overwrite)
    real_files, fake_files, common, unmatched = _match(Path(real), fakes, strict, out)
    warnings = _probe_all(real_files, fake_files, common, size, protocol)
    drawn = draw_templates(sorted(common), pairing, protocol.practice, protocol.trials, templates, seed)
    payload = {
        "format": STUDY_FORMAT,
        "version": STUDY_VERSION,
        "id": secrets.token_hex(6),
        "created": utc_now(),
        "question": QUESTION,
        "answer": "the side the participant picked as fake; judged real = picked the real image",
        "pairing": pairing,
        "seed": seed,
        "protocol": asdict(protocol),
        "methods": [name for name, _ in fakes],
        "sources": {
            "real": str(Path(real).resolve()),
            "fake": {name: str(Path(folder).resolve()) for name, folder in fakes},
        },
        "matched": len(common),
        "unmatched": unmatched,
        "resized_to": size or None,
        "templates": drawn,
    }
    _write_study_folder(out, payload, real_files, fake_files, size, link)
    return CreateSummary(out, len(common), {n: Path(f) for n, f in fakes}, unmatched, warnings, templates)


def _check_create(
    out: Path, fakes: list[tuple[str, str | Path]], pairing: str, templates: int, size: int, overwrite: bool
) -> None:
    """Refuse settings that cannot make a study, and an `out` that is not ours to replace."""
    if pairing not in PAIRINGS:
        raise StudyError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    if not fakes:
        raise StudyError("give at least one folder of generated images (--fake DIR or --fake NAME=DIR)")
    if templates < 1:
        raise StudyError(f"templates must be at least 1, got {templates}")
    if size and not 8 <= size <= 4096:
        raise StudyError(f"size must be from 8 to 4096 pixels, got {size}")
    names = [name for name, _ in fakes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise StudyError(f"method names must differ; {', '.join(duplicates)} given twice (use --fake NAME=DIR)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise StudyError(
                f"{out} already exists; pass --overwrite to replace it (its responses too) or pick another --out"
            )
        if not (out / STUDY_FILE).is_file():
            raise StudyError(
                f"{out} is not a study folder (no {STUDY_FILE}); refusing to replace it even with --overwrite"
            )


def _match(
    real: Path, fakes: list[tuple[str, str | Path]], strict: bool, out: Path
) -> tuple[dict[str, Path], dict[str, dict[str, Path]], set[str], dict[str, dict[str, list[str]]]]:
    """(real files, fake files per method, the names in every folder, the unmatched names)."""
    real_files = _collect(real, "real")
    fake_files = {name: _collect(Path(folder), f"fake ({name})") for name, folder in fakes}
    common = set(real_files)
    for files in fake_files.values():
        common &= set(files)
    unmatched = {
        name: {"no_fake": sorted(set(real_files) - set(files)), "no_real": sorted(set(files) - set(real_files))}
        for name, files in fake_files.items()
    }
    if strict and any(v["no_fake"] or v["no_real"] for v in unmatched.values()):
        summary = CreateSummary(out, len(common), {}, unmatched, [], 0)
        raise StudyError("unmatched images (--strict):\n" + summary.format())
    if not common:
        raise StudyError(f"no image name is in {real} and in every fake folder; names are matched without extension")
    return real_files, fake_files, common, unmatched


def _probe_all(
    real_files: dict[str, Path],
    fake_files: dict[str, dict[str, Path]],
    common: set[str],
    size: int,
    protocol: Protocol,
) -> list[str]:
    """Probe every image used: unreadable files are errors; size and format differences
    between real and fake (which can give the fakes away) are returned as warnings."""
    problems, warnings = [], []
    formats: dict[str, set[str]] = {"real": set()}
    size_mismatch = []
    for name in sorted(common):
        try:
            real_fmt, real_size = _probe(real_files[name])
            formats["real"].add(real_fmt)
        except StudyError as err:
            problems.append(str(err))
            continue
        for method, files in fake_files.items():
            try:
                fmt, fake_size = _probe(files[name])
            except StudyError as err:
                problems.append(str(err))
                continue
            formats.setdefault(method, set()).add(fmt)
            if fake_size != real_size:
                size_mismatch.append(
                    f"{name}: real {real_size[0]}x{real_size[1]}, {method} {fake_size[0]}x{fake_size[1]}"
                )
    if problems:
        raise StudyError(f"{len(problems)} unreadable image(s):\n" + "\n".join(problems))
    if size_mismatch and not size:
        warnings.append(
            f"{len(size_mismatch)} real/fake pairs differ in size (e.g. {size_mismatch[0]}); the page shows both "
            f"at {protocol.display_px} px, but pass --size N to resize them all to N x N"
        )
    if not size and len({frozenset(f) for f in formats.values()}) > 1:
        listing = "; ".join(f"{k}: {', '.join(sorted(v))}" for k, v in formats.items())
        warnings.append(
            f"real and fake images are stored in different formats ({listing}): compression artefacts can tell "
            "them apart; pass --size N to re-encode all as PNG"
        )
    return warnings


def _write_study_folder(
    out: Path,
    payload: dict[str, Any],
    real_files: dict[str, Path],
    fake_files: dict[str, dict[str, Path]],
    size: int,
    link: bool,
) -> None:
    """Place the images the templates use and study.json in a new folder, then put it in the
    place of `out` (atomically: a failure leaves `out` as it was)."""
    used = set()
    for plan in payload["templates"]:
        for t in plan["practice"] + plan["trials"]:
            used.update((("real", t["real"]), ("fake", t["fake"])))
    used_real = sorted(n for kind, n in used if kind == "real")
    used_fake = sorted(n for kind, n in used if kind == "fake")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        real_paths = {}
        for name in used_real:
            rel = f"images/real/{_target_name(name, real_files[name], size)}"
            _place(real_files[name], tmp / rel, size, link)
            real_paths[name] = rel
        fake_paths: dict[str, dict[str, str]] = {}
        taken: set[str] = set()
        for method, files in fake_files.items():
            slug = _slug(method, taken)
            fake_paths[method] = {}
            for name in used_fake:
                rel = f"images/fake/{slug}/{_target_name(name, files[name], size)}"
                _place(files[name], tmp / rel, size, link)
                fake_paths[method][name] = rel
        # study.json's keys in the order they always had
        images = {"images": {"real": real_paths, "fake": fake_paths}}
        ordered = {k: v for k, v in payload.items() if k != "templates"} | images | {"templates": payload["templates"]}
        _write_json(tmp / STUDY_FILE, ordered)
        if out.exists():
            old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_study(root: str | Path) -> Study:
    """Read STUDY/study.json; StudyError if it is missing or not a study this version understands."""
    root = Path(root)
    path = root / STUDY_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyError(
            f"{root} is not a study folder (no {STUDY_FILE}); make one with `pix2pix study create`"
        ) from None
    except json.JSONDecodeError as err:
        raise StudyError(f"{path}: not valid JSON ({err})") from None
    if raw.get("format") != STUDY_FORMAT or raw.get("version") != STUDY_VERSION:
        raise StudyError(f"{path}: not a {STUDY_FORMAT} version {STUDY_VERSION} file")
    try:
        study = Study(
            root=root,
            id=raw["id"],
            pairing=raw["pairing"],
            seed=raw["seed"],
            protocol=Protocol(**raw["protocol"]),
            methods=list(raw["methods"]),
            real_images=raw["images"]["real"],
            fake_images=raw["images"]["fake"],
            templates=raw["templates"],
            question=raw.get("question", QUESTION),
            raw=raw,
        )
    except (KeyError, TypeError) as err:
        raise StudyError(f"{path}: missing or malformed entry {err}") from None
    if not study.templates or not study.methods:
        raise StudyError(f"{path}: no templates or no methods")
    if not re.fullmatch(r"[0-9a-f]{4,32}", study.id):
        raise StudyError(f"{path}: malformed study id {study.id!r}")
    return study
