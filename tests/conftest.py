"""Shared test set-up.

TRITON_INTERPRET must be set before any module that defines a `@triton.jit` kernel is imported, so it is
decided here, at collection time: without a CUDA device the Triton kernels run in Triton's CPU
interpreter.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Before anything imports mujoco (franky-sim, the renderers): headless EGL, or a renderer aborts the process.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


FIXTURE_FILES = ("official_tiny.pt", "official_tiny_io.pt", "official_ac_tiny.pt", "official_ac_tiny_io.pt",
                 "official_keys.json", "official_cem.pt")


def _fixtures_dir() -> Path:
    env = os.environ.get("VJEPA_FAST_FIXTURES")
    return Path(env) if env else REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder with the golden outputs of Meta's reference code: tests/fixtures/ (the repository's copy, with
    its README saying how they were made), or $VJEPA_FAST_FIXTURES.

    A missing file is an error, not a skip: parity is the point of these tests.
    """
    path = _fixtures_dir()
    missing = [f for f in FIXTURE_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"reference fixtures {missing} not found in {path}: they ship in the repository's tests/fixtures/ "
            "(git clone brings them); VJEPA_FAST_FIXTURES may point to another copy"
        )
    return path


V21_FIXTURE_FILES = ("v21_tiny.pt", "v21_tiny_io.pt", "v21_tiny_dist.pt", "v21_keys.json")


@pytest.fixture(scope="session")
def v21_fixtures_dir(fixtures_dir: Path) -> Path:
    """The V-JEPA 2.1 golden outputs of Meta's 2.1 code: `v2_1/` inside `fixtures_dir` (README there)."""
    path = fixtures_dir / "v2_1"
    missing = [f for f in V21_FIXTURE_FILES if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(f"V-JEPA 2.1 reference fixtures {missing} not found in {path}")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
