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


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from vjepa_fast.train.config import load_pretrain_config
    from vjepa_fast.train.distributed import cleanup
    from vjepa_fast.train.pretrain import pretrain

    cfg = load_pretrain_config(args.config, args.preset, args.overrides)
    try:
        result = pretrain(cfg, resume=not args.no_resume, max_steps=args.max_steps, progress=not args.no_progress)
    finally:
        cleanup()
    if result.losses:
        print(f"step {result.step}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; outputs in {cfg.out_dir}")
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

    p = sub.add_parser(
        "pretrain",
        help="V-JEPA 2 self-supervised pretraining (1 process, or DDP/FSDP2 under torchrun)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Pretrain a video encoder with V-JEPA 2's objective (masked latent prediction against an
EMA target encoder, multi-block 3D masks, warmup-constant LR, optional cooldown at higher resolution).

Configuration: a preset (tiny_cpu, vit_large, vit_huge, vit_giant), a TOML file (which may name its
own `preset = "..."`), then KEY=VALUE overrides in TOML syntax, e.g.
  vjepa-fast pretrain --preset tiny_cpu data.sources='["videos/"]' steps=500
  torchrun --nproc_per_node 8 -m vjepa_fast.cli pretrain --config vitl.toml optim.lr_peak=4e-4
Runs resume from the latest checkpoint in OUT_DIR/checkpoints unless --no-resume. Outputs in out_dir:
metrics.csv, tensorboard/, loss.png, checkpoints/step_*/ (DCP, resumable on any process count),
encoder.safetensors (the target encoder, for downstream use).""",
    )
    p.add_argument("--config", default=None, help="TOML config file")
    p.add_argument("--preset", default=None, help="preset to start from (default: the file's, else vit_large)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps of this invocation")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr_peak=3e-4")
    p.set_defaults(func=_cmd_pretrain)

    sub.add_parser("train-ac", add_help=False,
                   help="V-JEPA 2-AC post-training of the action-conditioned predictor (--config FILE; see "
                        "`vjepa-fast train-ac --help`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-ac"]:  # its own argument parser (vjepa_fast.train.ac.main)
        from vjepa_fast.train.ac import main as train_ac_main

        return train_ac_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
