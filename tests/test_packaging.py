"""pyproject.toml tells the truth: every third-party module the package (and robot/) imports is declared."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from vjepa_fast.train.config import tomllib

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DIST = {"PIL": "pillow", "cv2": "opencv-python-headless", "yaml": "pyyaml", "franky_sim": "franky-sim",
        "pinocchio": "pin"}
OWN = {"vjepa_fast", "robot", "kernels", "benchmarks"}


def _requirements(specs: list[str]) -> set[str]:
    return {re.split(r"[\s;<>=!~\[]", s, maxsplit=1)[0].lower() for s in specs}


def _imports(folder: Path) -> dict[str, str]:
    """Top-level module names imported anywhere under folder (function-level imports too) -> a file using it."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _third_party(found: dict[str, str]) -> dict[str, str]:
    return {m: f for m, f in found.items() if m not in sys.stdlib_module_names and m not in OWN and m != "tomllib"}


def test_every_import_is_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _requirements(meta["dependencies"])
    extras = {k: _requirements(v) for k, v in meta["optional-dependencies"].items()}
    package = {**_imports(ROOT / "vjepa_fast"), **_imports(ROOT / "kernels")}
    missing = {m: f for m, f in _third_party(package).items()
               if DIST.get(m, m).lower() not in core | extras["triton"]}
    assert not missing, f"imported by the package but not declared in [project] dependencies: {missing}"
    robot = _third_party(_imports(ROOT / "robot"))
    missing = {m: f for m, f in robot.items() if DIST.get(m, m).lower() not in core | extras["robot"]}
    assert not missing, f"imported by robot/ but not in dependencies or the robot extra: {missing}"


def test_python_version_matches_the_code():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor = re.fullmatch(r">=\s*3\.(\d+)", meta["requires-python"])
    assert floor, meta["requires-python"]
    uses_tomllib = "tomllib" in _imports(ROOT / "vjepa_fast")
    if uses_tomllib and int(floor.group(1)) < 11:
        assert any(s.startswith("tomli") and "python_version < '3.11'" in s for s in meta["dependencies"]), (
            "tomllib is Python 3.11+: declare tomli for older Pythons or require 3.11")
