"""robot/'s two layers (docs/ARCHITECTURE.md): the rig never imports the simulator tools (robot/simtools/), and
the modules that moved there still resolve from their old names with a warning that says where they went."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Rig modules allowed to reach robot.simtools, and why: run_mpc.py's --sim --task mode (simulator only).
ALLOWED = {"run_mpc"}


def _robot_imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return [(line, name) for line, name in out if name.split(".")[0] == "robot"]


def test_the_rig_does_not_import_the_simulator_tools() -> None:
    rig = sorted(p for p in (ROOT / "robot").glob("*.py") if p.stem not in ALLOWED)
    assert len(rig) >= 10, rig  # control, gripper, camera, shm, proc, safety, sim, rig, mpc, collect, ...
    bad = [f"robot/{p.name}:{line} imports {name}" for p in rig for line, name in _robot_imports(p)
           if name.startswith("robot.simtools") and not name.startswith("robot.simtools.__")]
    assert not bad, "the rig must not import robot.simtools:\n" + "\n".join(bad)


def test_the_simulator_tools_import_only_the_rig_and_each_other() -> None:
    rig = {p.stem for p in (ROOT / "robot").glob("*.py")} - {"__init__"}
    tools = {p.stem for p in (ROOT / "robot" / "simtools").glob("*.py")} - {"__init__"}
    assert {"physics", "tasks", "generate_physics", "sim_eval"} <= tools
    for p in (ROOT / "robot" / "simtools").glob("*.py"):
        for line, name in _robot_imports(p):
            parts = name.split(".")
            ok = parts == ["robot"] or parts[1] in rig or (parts[1] == "simtools" and (len(parts) == 2
                                                                                       or parts[2] in tools))
            assert ok, f"robot/simtools/{p.name}:{line} imports {name}, which is neither the rig nor a tool"


@pytest.mark.parametrize("name", ["physics", "tasks", "generate", "generate_physics", "task_eval", "sim_eval",
                                  "ceiling"])
def test_moved_modules_resolve_from_their_old_names(name: str) -> None:
    new = importlib.import_module(f"robot.simtools.{name}")
    import sys

    sys.modules.pop(f"robot.{name}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module(f"robot.{name}")
    assert old is new
    assert any(issubclass(w.category, DeprecationWarning) and f"robot.simtools.{name}" in str(w.message)
               for w in caught), [str(w.message) for w in caught]
