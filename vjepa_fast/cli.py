"""Command line of vjepa_fast: `vjepa-fast <command> --help` explains each command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    import vjepa_fast

    lines = [f"vjepa_fast {vjepa_fast.__version__}", f"torch {torch.__version__} (CUDA build: {torch.version.cuda})"]
    if vjepa_fast._C is None:
        lines.append("compiled extension: NOT BUILT (pip install --no-build-isolation -e .)")
    else:
        from vjepa_fast.ops import cuda_built

        ops = sorted({n.split("::")[1].split(".")[0] for n in torch._C._dispatch_get_all_op_names()
                      if n.startswith("vjepa_fast::")})
        lines.append(f"compiled extension: yes, CUDA kernels: {cuda_built()}; ops: {', '.join(ops)}")
    try:
        import triton

        lines.append(f"triton {triton.__version__}")
    except ImportError:
        lines.append("triton: not installed (Triton kernels unavailable)")
    lines.append(f"GPU visible: {torch.cuda.is_available()}")
    print("\n".join(lines))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from vjepa_fast.demo import run_demo

    run_demo(steps=args.steps, workdir=args.workdir, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa-fast",
        description="Fast V-JEPA 2 / V-JEPA 2-AC: pretraining, action-conditioned training, latent planning.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="show the build (compiled ops, CUDA kernels, Triton, GPU)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "demo",
        help="a small real job on the CPU: tiny V-JEPA pretraining steps on a synthetic video",
        description="Writes a few synthetic mp4 clips (a square moving over a textured background), decodes "
        "them with the training data pipeline (PyAV, V-JEPA 2 augmentation), draws multi-block 3D masks "
        "and runs pretraining steps of a tiny encoder + predictor with the fused EMA target update. "
        "Prints the loss and step times.",
    )
    p.add_argument("--steps", type=int, default=30, help="optimizer steps (default 30)")
    p.add_argument("--workdir", default=None, help="where to write the clips (default: a temporary folder)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
