"""Triton kernels of vjepa_fast, one op per module, installed and imported as `vjepa_fast.kernels` only.

Set TRITON_INTERPRET=1 before importing a kernel module to run the kernels on the CPU.

This folder sits at the top of the repository (the design card), so a process whose sys.path holds the
repository root (`python -m pytest` or `python -c` run there, the robot scripts) could find it as a top-level
`kernels` and shadow Hugging Face's own `kernels` package, which transformers >= 5 imports. It never answers to
that name: imported as `kernels`, it hands the import over to the real `kernels` distribution found further
along sys.path, or fails as if it were not there.
"""

from __future__ import annotations

if __name__ != "vjepa_fast.kernels":
    import importlib.machinery
    import importlib.util
    import os
    import sys

    def _hand_over(name: str) -> None:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

        def other(entry: str) -> bool:
            try:
                return os.path.abspath(entry or os.getcwd()) != here
            except OSError:
                return True

        spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if other(p)])
        if spec is None or spec.loader is None:
            del sys.modules[name]
            raise ModuleNotFoundError(
                f"No module named {name!r} (the folder {os.path.join(here, name)} holds vjepa_fast's Triton "
                "sources; import them as vjepa_fast.kernels)", name=name)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # the import system returns whatever sys.modules holds once we return
        spec.loader.exec_module(module)

    _hand_over(__name__)
