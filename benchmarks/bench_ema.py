"""EMA update of a whole target encoder: ours vs Meta's torch._foreach_* update vs a per-parameter loop.

CPU: the parameter list of a real ViT-L/16 (303.9M fp32 parameters). GPU: ViT-g/16 (1012.2M), where the
figure of merit is the fraction of HBM bandwidth used: bytes = 3 x 4 x N (read target and source, write
target) over the measured time. Run: `pytest benchmarks/bench_ema.py --benchmark-only`.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks._common import peak_hbm_bytes_per_s
from vjepa_fast.models import EncoderConfig, VideoEncoder
from vjepa_fast.ops import ema_update_


def _param_lists(config: EncoderConfig, device: str, dtype: torch.dtype):
    with torch.device("meta"):
        model = VideoEncoder(config)
    shapes = [p.shape for p in model.parameters()]
    target = [torch.empty(s, device=device, dtype=dtype).normal_() for s in shapes]
    source = [torch.empty(s, device=device, dtype=dtype).normal_() for s in shapes]
    return target, source


@pytest.fixture(scope="module")
def vitl_cpu():
    return _param_lists(EncoderConfig.vit_large(), "cpu", torch.float32)


@pytest.fixture(scope="module")
def vitg_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return _param_lists(EncoderConfig.vit_giant(), "cuda", torch.float32)


CPU_IMPLS = {"vjepa_fast": "auto", "torch_foreach": "foreach", "python_loop": "loop"}


def _run(impl: str, target, source):
    if impl == "loop":
        from vjepa_fast.reference import ema_update_loop_

        ema_update_loop_(target, source, 0.99925)
    else:
        ema_update_(target, source, 0.99925, backend=impl)


def _record(benchmark, target, sync: bool) -> None:
    numel = sum(t.numel() for t in target)
    bytes_moved = 3 * numel * target[0].element_size()
    mean = benchmark.stats.stats.mean
    benchmark.extra_info["params"] = numel
    benchmark.extra_info["tensors"] = len(target)
    benchmark.extra_info["GB_per_s"] = round(bytes_moved / mean / 1e9, 2)
    peak = peak_hbm_bytes_per_s() if sync else None
    if peak:
        benchmark.extra_info["fraction_of_peak_HBM"] = round(bytes_moved / mean / peak, 3)
        benchmark.extra_info["device"] = torch.cuda.get_device_name()


@pytest.mark.parametrize("impl", list(CPU_IMPLS))
def test_ema_vit_large_cpu(benchmark, vitl_cpu, impl):
    target, source = vitl_cpu
    benchmark.group = "ema ViT-L fp32 CPU"
    benchmark.pedantic(_run, args=(CPU_IMPLS[impl], target, source), rounds=5, iterations=1, warmup_rounds=1)
    _record(benchmark, target, sync=False)


GPU_IMPLS = {"vjepa_fast_cuda": "auto", "vjepa_fast_triton": "triton", "torch_foreach": "foreach",
             "python_loop": "loop"}


@pytest.mark.parametrize("impl", list(GPU_IMPLS))
def test_ema_vit_giant_cuda(benchmark, vitg_cuda, impl):
    target, source = vitg_cuda
    benchmark.group = "ema ViT-g fp32 CUDA"

    def run():
        _run(GPU_IMPLS[impl], target, source)
        torch.cuda.synchronize()

    benchmark.pedantic(run, rounds=20, iterations=1, warmup_rounds=2)
    _record(benchmark, target, sync=True)
