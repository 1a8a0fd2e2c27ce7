"""Process-level set-up the package needs before some third-party libraries load."""

from __future__ import annotations

import importlib.util

__all__ = ["preload_triton"]


def preload_triton() -> bool:
    """Imports triton now, when it is installed; True if it is loaded.

    Call before creating the first OpenGL context in a process (robot/camera.py does). Mesa's software renderer
    (llvmpipe, what MuJoCo's EGL rendering uses on a CPU) and triton's libtriton each bring their own LLVM: loaded
    in the order Mesa then triton, the process dies with a segmentation fault as libtriton loads (seen: render a
    frame, then anything that imports torch._dynamo, such as building an optimizer). Triton first, then Mesa,
    works."""
    if importlib.util.find_spec("triton") is None:
        return False
    import triton  # noqa: F401

    return True
