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

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _fixtures_dir() -> Path:
    env = os.environ.get("VJEPA_FAST_FIXTURES")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Folder with the golden outputs of Meta's reference code (../shared/fixtures).

    A missing folder is an error, not a skip: parity is the point of these tests.
    """
    path = _fixtures_dir()
    if not (path / "official_tiny.pt").is_file():
        raise FileNotFoundError(
            f"reference fixtures not found in {path}; set VJEPA_FAST_FIXTURES to the shared/fixtures folder"
        )
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
