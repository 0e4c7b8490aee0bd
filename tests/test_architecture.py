"""The package's floor plan (architecture.md): layers that import only those below them, no
import circle, no private name taken from another module, and a translation that loads nothing
of training, evaluation, experiments or the perceptual metrics.

Every import counts: at module level, inside functions, and under `if TYPE_CHECKING:`, relative
and absolute. A function-local import is allowed only where it defers a heavy or optional
package (torch for `pix2pix --help`, onnxruntime, tensorboard, matplotlib); it still has to
point downwards.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pix2pix"

# lowest first; a module may import its own layer's modules (without a circle) and those below
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("pix2pix.version", "pix2pix.extras", "pix2pix.progress")),
    ("data", ("pix2pix.data",)),
    ("settings", ("pix2pix.config", "pix2pix.paper")),
    ("models", ("pix2pix.models",)),
    ("metrics", ("pix2pix.metrics",)),
    ("hub", ("pix2pix.hub",)),
    ("inference", ("pix2pix.inference",)),
    ("evaluation", ("pix2pix.evaluation",)),
    ("training", ("pix2pix.training",)),
    ("experiments", ("pix2pix.experiments",)),
    ("serve", ("pix2pix.serve",)),
    ("study", ("pix2pix.study",)),
    ("cli", ("pix2pix.cli",)),
    ("face", ("pix2pix", "pix2pix.__main__")),
)
# where an import of the package's own modules may stand inside a function: it defers torch (or,
# for the study's face, NumPy, Pillow and the HTTP server), so that `pix2pix --help` and the
# command parsers load without them (each says so in a comment)
DEFERRING = ("pix2pix", "pix2pix.serve", "pix2pix.study", "pix2pix.cli", "pix2pix.data.edges")
# what `import pix2pix.inference.predict` must not load
NOT_FOR_TRANSLATION = ("pix2pix.training", "pix2pix.evaluation", "pix2pix.experiments", "pix2pix.metrics.perceptual")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> list[tuple[str, str, int]]:
    """(module imported, name taken from it or "", line) for every import of the package's
    own modules in module `name`."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] == "pix2pix"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pix2pix":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                # `from . import metrics` imports a module; `from .x import f` a name of x
                found.append(
                    (submodule, "", node.lineno) if submodule in MODULES else (target, alias.name, node.lineno)
                )
    return found


def graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in imports(name) if target != name} for name in MODULES}


def layer_of(name: str) -> int:
    best, level = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = name == prefix or (prefix != "pix2pix" and name.startswith(prefix + "."))
            if matches and len(prefix) > best:
                best, level = len(prefix), index
    assert level is not None, f"{name}: in no layer of tests/test_architecture.py (add it to LAYERS)"
    return level


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


def test_no_import_runs_up_a_layer() -> None:
    wrong = [
        f"{name}:{line} imports {target} ({LAYERS[layer_of(name)][0]} -> {LAYERS[layer_of(target)][0]})"
        for name in MODULES
        for target, _, line in imports(name)
        if target in MODULES and layer_of(target) > layer_of(name)
    ]
    assert not wrong, "imports from a lower layer to a higher one:\n" + "\n".join(wrong)


def test_no_import_circle() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if nxt not in MODULES:
                continue
            if state.get(nxt) == 1:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_private_name_taken_from_another_module() -> None:
    taken = [
        f"{name}:{line} takes {target}.{what}"
        for name in MODULES
        for target, what, line in imports(name)
        if what.startswith("_") and not what.startswith("__") and target != name
    ]
    assert not taken, "private names imported across modules (make them public where they live):\n" + "\n".join(taken)


def test_function_level_imports_only_where_they_defer_torch() -> None:
    local = []
    for name, path in MODULES.items():
        if name in DEFERRING or name.startswith("pix2pix.cli."):
            continue
        for fn in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(fn):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("pix2pix")):
                        local.append(f"{name}:{node.lineno} imports {'.' * node.level}{node.module or ''} in {fn.name}")
    assert not local, "imports of the package inside functions (move them to the top of the module):\n" + "\n".join(
        local
    )


def test_translation_loads_no_training_evaluation_or_perceptual_metrics() -> None:
    code = "import sys, pix2pix.inference.predict; print('\\n'.join(m for m in sys.modules if m.startswith('pix2pix')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = out.split()
    assert "pix2pix.inference.predict" in loaded
    wrong = [m for m in loaded if any(m == p or m.startswith(p + ".") for p in NOT_FOR_TRANSLATION)]
    assert not wrong, f"import pix2pix.inference.predict loads {wrong}"
