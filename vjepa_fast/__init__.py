"""vjepa_fast: fast V-JEPA 2 and V-JEPA 2-AC in PyTorch.

`import vjepa_fast` loads the compiled extension, which registers the ops under `torch.ops.vjepa_fast`;
the Python submodules are imported lazily. A source tree without a built extension still imports (the
pure-PyTorch models work); `vjepa_fast.ops` then raises an ImportError that says how to build it.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch  # noqa: F401  (libtorch must be loaded before the extension)

try:
    from vjepa_fast import _C  # noqa: F401
except ImportError:
    _C = None

__version__ = "0.1.0"

_LAZY = {
    "load_official": ("vjepa_fast.checkpoints", "load_official"),
    "ops": ("vjepa_fast.ops", None),
    "models": ("vjepa_fast.models", None),
    "reference": ("vjepa_fast.reference", None),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'vjepa_fast' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


__all__ = ["__version__", *_LAZY]
