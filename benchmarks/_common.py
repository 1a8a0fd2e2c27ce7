"""Helpers shared by the benchmark suites."""

from __future__ import annotations

import torch


def peak_hbm_bytes_per_s() -> float | None:
    """Datasheet HBM bandwidth of the visible GPU (for %-of-peak figures), None when unknown."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    table = {"H200": 4.8e12, "H100 NVL": 3.9e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "A100": 2.0e12}
    for key, value in table.items():
        if key in name:
            return value
    return None


def peak_bf16_flops() -> float | None:
    """Datasheet dense bf16 tensor-core FLOP/s of the visible GPU (no sparsity), None when unknown."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    table = {"H200": 989e12, "H100 NVL": 835e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}
    for key, value in table.items():
        if key in name:
            return value
    return None
