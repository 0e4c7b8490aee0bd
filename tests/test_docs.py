"""The documentation's check: README.md is a front page (under 12 KB, linking every docs page),
every relative link in README.md and docs/*.md points to a file that exists (and a `#anchor` to a
heading of it), every `pix2pix ...` command in a bash block parses with the real command-line
parser, and every `pix2pix.xxx` module path written in the docs can be imported."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest

from pix2pix.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_LIMIT = 12 * 1024

# ONNX metadata keys written as `pix2pix.config`-style names (docs/export-and-serve.md), not modules
NOT_MODULES = {"pix2pix.size_multiple", "pix2pix.direction"}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MODULE = re.compile(r"(?<![\w/.-])pix2pix(?:\.[A-Za-z_]\w*)+")
CONTROL = {";", "&", "&&", "|", "||", ";;"}
SHELL_WORDS = {"do", "then", "else", "time", "exec", "!"}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def outside_fences(text: str):
    """(line number, line) of the lines not inside ``` blocks."""
    fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            yield number, line


def anchors(path: Path) -> set[str]:
    return {slug(line.lstrip("#")) for _, line in outside_fences(path.read_text()) if re.match(r"#+ ", line)}


def bash_blocks(path: Path):
    """(first line number, lines) of each ```bash block."""
    block, start = None, 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if block is None and stripped.startswith("```"):
            if stripped[3:].strip() in ("bash", "sh", "shell", "console"):
                block, start = [], number + 1
            else:
                block, start = "other", number
        elif block is not None and stripped.startswith("```"):
            if block != "other":
                yield start, block
            block = None
        elif isinstance(block, list):
            block.append(line)


def logical_lines(start: int, lines: list[str]):
    """(line number, text) with backslash continuations joined."""
    pending, first = "", start
    for offset, line in enumerate(lines):
        if not pending:
            first = start + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield first, pending + line
        pending = ""
    if pending:
        yield first, pending


def segments(text: str) -> list[list[str]] | None:
    """The simple commands of a shell line, comments dropped; None when it cannot be read."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:
        return None
    out, current = [], []
    for token in tokens:
        if token in CONTROL:
            out.append(current)
            current = []
        else:
            current.append(token)
    out.append(current)
    return [words for words in out if words]


def pix2pix_args(words: list[str]) -> list[str] | None:
    """The arguments after `pix2pix` (or `python -m pix2pix`, `torchrun ... -m pix2pix`) once
    environment assignments, `nice -n N` and the like are stripped; None if not a pix2pix call."""
    words = list(words)
    while words:
        if re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]) or words[0] in SHELL_WORDS:
            words.pop(0)
        elif words[0] == "nice" and len(words) > 2 and words[1] == "-n":
            words = words[3:]
        elif words[0] in ("nice", "nohup"):
            words.pop(0)
        else:
            break
    if not words:
        return None
    if words[0] == "pix2pix":
        args = words[1:]
    elif words[0] in ("python", "python3", "torchrun") and "-m" in words:
        at = words.index("-m")
        if at + 1 >= len(words) or words[at + 1] != "pix2pix":
            return None
        args = words[at + 2 :]
    else:
        return None
    # `[--private]`, `[--license mit]`: optional parts, checked as if given
    return [word.strip("[]") for word in args if word.strip("[]")]


def documented_commands():
    """(page, line, words) of every pix2pix command in a bash block, and the lines skipped."""
    commands, skipped = [], []
    for page in PAGES:
        for start, lines in bash_blocks(page):
            for number, text in logical_lines(start, lines):
                if "pix2pix" not in text.split("#")[0]:
                    continue
                if "$(" in text or "`" in text or "<(" in text:
                    skipped.append((rel(page), number, text))
                    continue
                parts = segments(text)
                if parts is None:
                    skipped.append((rel(page), number, text))
                    continue
                for words in parts:
                    args = pix2pix_args(words)
                    if args is not None:
                        commands.append((rel(page), number, args))
    return commands, skipped


def test_readme_is_a_front_page_linking_every_docs_page():
    size = len(README.read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; the limit is {README_LIMIT}"
    assert DOCS, "no docs/*.md pages"
    targets = {
        (README.parent / link.split("#")[0]).resolve()
        for link in LINK.findall(README.read_text())
        if not re.match(r"[a-z]+:", link) and link.split("#")[0]
    }
    missing = [rel(page) for page in DOCS if page.resolve() not in targets]
    assert not missing, f"README.md does not link {missing}"
    index = ROOT / "docs" / "index.md"
    listed = {(index.parent / link.split("#")[0]).resolve() for link in LINK.findall(index.read_text())}
    unlisted = [rel(page) for page in DOCS if page != index and page.resolve() not in listed]
    assert not unlisted, f"docs/index.md does not list {unlisted}"


def test_relative_links_point_to_existing_files_and_headings():
    broken = []
    for page in PAGES:
        for number, line in outside_fences(page.read_text()):
            for link in LINK.findall(line):
                if re.match(r"[a-z][a-z0-9+.-]*:", link):  # https:, mailto:
                    continue
                target, _, anchor = link.partition("#")
                path = (page.parent / target).resolve() if target else page
                if not path.exists():
                    broken.append(f"{rel(page)}:{number}: {link} (no such file)")
                elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                    broken.append(f"{rel(page)}:{number}: {link} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_documented_command_parses():
    commands, skipped = documented_commands()
    parser = build_parser()
    failures = []
    for page, number, args in commands:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(args)
        except SystemExit as exit_:
            if exit_.code:
                said = err.getvalue().strip().splitlines()
                message = [line for line in said if "error" in line] or said[-1:] or [f"exit {exit_.code}"]
                failures.append(f"{page}:{number}: pix2pix {shlex.join(args)}\n    {message[0]}")
    assert len(commands) >= 50, f"only {len(commands)} commands found: is the block reader broken?"
    assert not skipped, f"command lines that could not be read: {skipped}"
    assert not failures, f"{len(failures)} of {len(commands)} documented commands do not parse:\n" + "\n".join(failures)


def test_module_paths_in_the_docs_import():
    missing = []
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            for name in MODULE.findall(line):
                name = name.rstrip(".")
                if name in NOT_MODULES:
                    continue
                if importlib.util.find_spec(name) is not None:
                    continue
                # `pix2pix.serve.make_server`: a module and a name in it
                module, _, attribute = name.rpartition(".")
                try:
                    found = importlib.util.find_spec(module) is not None and hasattr(
                        importlib.import_module(module), attribute
                    )
                except ImportError:
                    found = False
                if not found:
                    missing.append(f"{rel(page)}:{number}: {name}")
    assert not missing, "module paths that do not import:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("pix2pix train --data D  # a comment", [["train", "--data", "D"]]),
        ("OMP_NUM_THREADS=1 nice -n 19 pix2pix reproduce t3 --train-only &", [["reproduce", "t3", "--train-only"]]),
        ("torchrun --nproc-per-node 4 -m pix2pix train --preset facades", [["train", "--preset", "facades"]]),
        ("pix2pix push M R [--private] [--license mit]", [["push", "M", "R", "--private", "--license", "mit"]]),
        ("pip install x && pix2pix demo", [["demo"]]),
    ],
)
def test_the_command_reader(line, expected):
    found = [args for words in segments(line) if (args := pix2pix_args(words)) is not None]
    assert found == expected
