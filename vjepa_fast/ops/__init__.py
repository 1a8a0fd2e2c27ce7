"""Public op API of vjepa_fast and the dispatch between the compiled, Triton and reference backends.

Importing this module loads the compiled extension `vjepa_fast._C`, whose static initialisers register
the compiled ops under `torch.ops.vjepa_fast` (ema_update_, cem_sample, cem_refit: schemas in csrc/ops.cpp, C++
CPU and, when built with CUDA, CUDA kernels), and registers their fake kernels so they trace under
torch.compile(fullgraph=True) and FakeTensorMode. rope_attention (Triton + reference, no C++ kernel) declares
its schema itself in ops/attention.py.
"""

from vjepa_fast.ops._extension import cuda_built
from vjepa_fast.ops.attention import ATTENTION_BACKENDS, rope_attention
from vjepa_fast.ops.cem import CEM_BACKENDS, cem_refit, cem_sample
from vjepa_fast.ops.ema import EMA_BACKENDS, ema_update_

__all__ = ["ATTENTION_BACKENDS", "CEM_BACKENDS", "EMA_BACKENDS", "cem_refit", "cem_sample", "cuda_built", "ema_update_", "rope_attention"]
