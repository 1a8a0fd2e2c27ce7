"""The library's import layers, checked from the source (parsed with `ast`, nothing imported).

Every module of `vjepa_fast/` and of `kernels/` (installed as `vjepa_fast.kernels`) is parsed, and every import
in it (top level, function-local and under `if TYPE_CHECKING`) becomes an edge importer -> imported module:

- `import vjepa_fast.a.b` and `from vjepa_fast.a import b` where `a/b.py` (or `a/b/`) exists: an edge to that
  submodule; `from vjepa_fast.a import name` for any other name: an edge to the package `vjepa_fast.a`, that is
  to its `__init__.py`. Relative imports are resolved first.
- Importing a submodule also runs its parents' `__init__.py`, but that is not an edge: a package's `__init__`
  re-exports its submodules, so every package would be a cycle with the modules it re-exports. A module that
  takes a name from its own package (`from vjepa_fast.data import x` inside `vjepa_fast/data/video.py`) does
  make the edge to `__init__`, and with the re-export that is a cycle, and it fails: import the name from the
  module that defines it.
- `vjepa_fast._C` is the compiled extension (csrc/), a unit of its own in the kernels' layer.

Checked: (a) the module graph has no cycle; (b) no module imports from a higher layer of `LAYERS`, nor from a
different unit of its own layer (siblings are independent: the reference twins never import the kernels they
check), save the pairs of `SIBLING_IMPORTS`. A unit is a top-level module or subpackage of `vjepa_fast`. The
root package `vjepa_fast/__init__.py` (lazy access to ops, models, checkpoints) sits in the top layer beside
the CLI, so no library module can import a name from it: import it from the module that defines it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vjepa_fast"
EXTENSION = "vjepa_fast._C"

# Low to high: a unit may import units of lower layers only.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("constants", "seeding", "fileio", "precision", "rope", "runtime", "config")),
    ("kernels", ("_C", "kernels", "reference", "masks", "robotics")),
    ("ops", ("ops",)),
    ("models", ("models",)),
    ("checkpoints/data", ("checkpoints", "data")),
    ("diagnostics/planning", ("diagnostics", "planning")),
    ("train", ("train",)),
    ("probes", ("probes",)),
    ("apps", ("demo", "cli", PACKAGE)),
)
# Imports allowed between two units of one layer: (importer, imported).
SIBLING_IMPORTS = {("cli", "demo"), ("cli", PACKAGE)}


@dataclass(frozen=True)
class Edge:
    importer: str
    line: int
    imported: str
    path: str


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for vjepa_fast/ and kernels/ (as vjepa_fast.kernels)."""
    out: dict[str, Path] = {}
    for folder, prefix in ((root / PACKAGE, PACKAGE), (root / "kernels", f"{PACKAGE}.kernels")):
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([prefix, *parts])] = path
    return out


def import_edges(files: dict[str, Path], root: Path = ROOT) -> list[Edge]:
    """Every import of a vjepa_fast module by a vjepa_fast module (see the module docstring for the rules)."""
    known = set(files) | {EXTENSION}
    edges = []
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in targets:
                if target == PACKAGE or target.startswith(PACKAGE + "."):
                    while target not in known:  # `import vjepa_fast.a.b.c` of a name-less path: its module
                        target = target.rpartition(".")[0]
                    edges.append(Edge(module, node.lineno, target, rel))
    return edges


def unit(module: str) -> str:
    """The top-level module or subpackage of vjepa_fast a module belongs to ("vjepa_fast" for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(u: str) -> int:
    for i, (_, units) in enumerate(LAYERS):
        if u in units:
            return i
    raise KeyError(u)


def layer_violations(edges: Iterable[Edge]) -> list[str]:
    out = []
    for e in edges:
        a, b = unit(e.importer), unit(e.imported)
        if a == b:
            continue
        la, lb = layer_of(a), layer_of(b)
        if lb > la or (lb == la and (a, b) not in SIBLING_IMPORTS):
            kind = "a higher layer" if lb > la else "a sibling unit of its own layer"
            out.append(f"{e.path}:{e.line}: {e.importer} imports {e.imported}, {kind}: layer {LAYERS[la][0]!r} "
                       f"({a}) may not import layer {LAYERS[lb][0]!r} ({b})")
    return out


def find_cycles(edges: Iterable[Edge]) -> list[list[Edge]]:
    """The cycles a depth-first search meets (each as its edges), one per set of modules."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.importer, []).append(e)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[Edge] = []
    cycles: dict[frozenset[str], list[Edge]] = {}

    def visit(m: str) -> None:
        state[m] = 1
        for e in graph.get(m, []):
            if state.get(e.imported) == 1:
                start = next((i for i, s in enumerate(stack) if s.importer == e.imported), len(stack))
                cycle = stack[start:] + [e]
                cycles.setdefault(frozenset(c.importer for c in cycle), cycle)
            elif e.imported not in state:
                stack.append(e)
                visit(e.imported)
                stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return list(cycles.values())


def _describe(cycle: list[Edge]) -> str:
    return " -> ".join(f"{e.importer} ({e.path}:{e.line})" for e in cycle) + f" -> {cycle[-1].imported}"


def test_every_unit_has_a_layer():
    units = {unit(m) for m in module_files()} | {unit(EXTENSION)}
    missing = sorted(u for u in units if not any(u in us for _, us in LAYERS))
    assert not missing, f"place these in LAYERS of tests/test_imports.py: {missing}"


def test_no_import_cycle():
    cycles = find_cycles(import_edges(module_files()))
    assert not cycles, "import cycles:\n" + "\n".join(_describe(c) for c in cycles)


def test_no_upward_import():
    bad = layer_violations(import_edges(module_files()))
    assert not bad, "imports against the layers (low to high: " + " < ".join(n for n, _ in LAYERS) + "):\n" + \
        "\n".join(bad)


def test_checker_catches_violations(tmp_path):
    """The checks fail on a planted upward import, a sibling import, a cycle through a package __init__ and a
    function-local relative import."""
    files = {
        "vjepa_fast/__init__.py": "",
        "vjepa_fast/rope.py": "",
        "vjepa_fast/models/__init__.py": "from vjepa_fast.models.layers import Block\n",
        "vjepa_fast/models/layers.py": "from vjepa_fast.models import Block\n",
        "vjepa_fast/reference/__init__.py": "import vjepa_fast.kernels.attention\n",
        "kernels/__init__.py": "",
        "kernels/attention.py": "import os\n\n\ndef f():\n    from vjepa_fast.models.layers import x\n",
        "vjepa_fast/ops/__init__.py": "",
        "vjepa_fast/ops/attention.py": "def g():\n    from ..rope import apply_rope\n    from . import ema\n",
        "vjepa_fast/ops/ema.py": "from .attention import g\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    edges = import_edges(module_files(tmp_path), tmp_path)
    assert Edge("vjepa_fast.ops.attention", 2, "vjepa_fast.rope", "vjepa_fast/ops/attention.py") in edges
    bad = layer_violations(edges)
    assert sorted(bad) == [
        "kernels/attention.py:5: vjepa_fast.kernels.attention imports vjepa_fast.models.layers, a higher layer: "
        "layer 'kernels' (kernels) may not import layer 'models' (models)",
        "vjepa_fast/reference/__init__.py:1: vjepa_fast.reference imports vjepa_fast.kernels.attention, a sibling "
        "unit of its own layer: layer 'kernels' (reference) may not import layer 'kernels' (kernels)",
    ]
    cycles = {frozenset(e.importer for e in c) for c in find_cycles(edges)}
    assert cycles == {frozenset({"vjepa_fast.models", "vjepa_fast.models.layers"}),
                      frozenset({"vjepa_fast.ops.attention", "vjepa_fast.ops.ema"})}
