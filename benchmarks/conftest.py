"""Benchmarks share the tests' set-up (Triton interpreter switch) but run only with --benchmark-only."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")



def pytest_benchmark_update_machine_info(config, machine_info):
    """Which CPU code paths ran: timings on an AVX2-only CPU and on one with AMX differ by several x."""
    from vjepa_fast import precision

    machine_info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    machine_info["amx"] = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    machine_info["avx512_bf16"] = bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)())
    machine_info["native_bf16"] = precision.native_bf16("cpu")
    machine_info["cpu_fallback_forced"] = precision.cpu_fallback_forced()
