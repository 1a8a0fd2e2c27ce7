"""Benchmarks share the tests' set-up (Triton interpreter switch) but run only with --benchmark-only."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")



def pytest_benchmark_update_machine_info(config, machine_info):
    """Which CPU code paths ran: timings on an AVX2-only CPU and on one with AMX differ by several x."""
    from vjepa_fast import precision

    machine_info.update(precision.cpu_summary())
