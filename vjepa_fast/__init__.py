"""vjepa_fast: fast V-JEPA 2 and V-JEPA 2-AC in PyTorch.

Submodules are imported lazily so that `import vjepa_fast` stays cheap and the compiled extension
(`vjepa_fast._C`) is only loaded by code that needs a fused op.
"""

from __future__ import annotations

import importlib
from typing import Any

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
