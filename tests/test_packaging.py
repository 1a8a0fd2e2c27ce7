"""pyproject.toml tells the truth: every third-party module the package (and robot/) imports is declared."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


# Run with `python -c` in the repository root, so the root is first on sys.path: the case where our top-level
# kernels/ folder used to shadow Hugging Face's `kernels` package (imported by transformers >= 5).
_ONE_PROCESS = r"""
import importlib.metadata, os, sys
os.environ["TRITON_INTERPRET"] = "1"
import torch
import transformers
from transformers import VJEPA2Model
from vjepa_fast.checkpoints import hf_config_dict
from vjepa_fast.models import EncoderConfig, PredictorConfig
from vjepa_fast.ops.attention import rope_attention
from vjepa_fast.reference.attention import reference_rope_attention
import vjepa_fast.kernels.attention as ours

root = os.path.abspath(sys.argv[1])
assert os.path.abspath(sys.path[0] or os.getcwd()) == root, sys.path[:2]
assert ours.__file__.startswith(os.path.join(root, "kernels")), ours.__file__
try:
    importlib.metadata.version("kernels")
    hf_kernels = True
except importlib.metadata.PackageNotFoundError:
    hf_kernels = False
try:
    import kernels
except ModuleNotFoundError:
    assert not hf_kernels, "Hugging Face's kernels is installed but `import kernels` failed"
    print("kernels: not installed")
else:
    assert hf_kernels, f"`import kernels` found {kernels.__file__} without the kernels distribution installed"
    ours_dir = os.path.join(root, "kernels") + os.sep
    assert not os.path.abspath(kernels.__file__).startswith(ours_dir), f"our folder shadows kernels: {kernels.__file__}"
    print("kernels:", kernels.__file__)

cfg = transformers.VJEPA2Config(**hf_config_dict(EncoderConfig.tiny(), PredictorConfig.tiny()))
model = VJEPA2Model(cfg).eval()
with torch.no_grad():
    out = model(torch.randn(1, 4, 3, 64, 64), skip_predictor=True).last_hidden_state
assert out.shape == (1, 32, 96) and torch.isfinite(out).all(), out.shape

g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(20, 2, 32, generator=g) for _ in range(3))
codes = torch.arange(20, dtype=torch.int32)
cu = torch.tensor([0, 20], dtype=torch.int32)
o = rope_attention(q, k, v, codes, codes, cu, cu, max_seqlen_q=20, max_seqlen_k=20, grid=(2, 2, 5), backend="triton")
r = reference_rope_attention(q, k, v, codes, codes, cu, cu, (2, 2, 5), 32 ** -0.5, 0)
assert (o - r).abs().max() < 1e-5
print("transformers", transformers.__version__, "and vjepa_fast.kernels in one process: ok")
"""


def test_transformers_and_our_kernels_share_one_process():
    pytest.importorskip("transformers")
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", _ONE_PROCESS, str(ROOT)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "in one process: ok" in res.stdout


def test_kernels_folder_never_answers_to_the_top_level_name(tmp_path):
    """Without Hugging Face's kernels anywhere on the path, `import kernels` fails even beside our folder."""
    shutil.copytree(ROOT / "kernels", tmp_path / "kernels")
    code = ("import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p]\n"
            "try:\n    import kernels\nexcept ModuleNotFoundError as e:\n    print('refused:', e)\n"
            "else:\n    raise SystemExit('imported ' + kernels.__file__)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "refused: No module named 'kernels'" in res.stdout and "vjepa_fast.kernels" in res.stdout
