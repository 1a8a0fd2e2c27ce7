"""Benchmarks share the tests' set-up (Triton interpreter switch) but run only with --benchmark-only."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

