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
    from vjepa_fast.ops.attention import triton_available

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    where = ("Triton kernel" if dev.type == "cuda" else "Triton interpreter (TRITON_INTERPRET=1)") \
        if triton_available(dev) else "PyTorch reference (no Triton kernel on this device)"
    lines.append(f"attn_impl='fused' on {dev.type}: {where}")
    print("\n".join(lines))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from vjepa_fast.demo import run_demo

    run_demo(steps=args.steps, workdir=args.workdir, seed=args.seed)
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from vjepa_fast.train.config import PretrainConfig, config_from_args
    from vjepa_fast.train.distributed import cleanup
    from vjepa_fast.train.pretrain import pretrain

    try:
        cfg = config_from_args(args, PretrainConfig)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise SystemExit(f"error: vjepa-fast pretrain: {exc}") from None
    try:
        result = pretrain(cfg, resume=not args.no_resume, max_steps=args.max_steps, progress=not args.no_progress)
    finally:
        cleanup()
    if result.losses:
        print(f"step {result.step}: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f}; outputs in {cfg.out_dir}")
    return 0


def _load_world_model(args: argparse.Namespace, dtype: str | None = None):
    """Encoder and AC predictor from files (our safetensors, or Meta's .pt; one file may hold both)."""
    import torch

    from vjepa_fast.checkpoints import load_official, load_safetensors
    from vjepa_fast.planning import WorldModel

    def load(path: str):
        return load_safetensors(path) if str(path).endswith(".safetensors") else load_official(path)

    enc_file = load(args.encoder)
    pred_file = enc_file if args.predictor in (None, args.encoder) else load(args.predictor)
    if enc_file.encoder is None:
        raise SystemExit(f"error: {args.encoder} holds no encoder")
    if pred_file.kind != "ac" or pred_file.predictor is None:
        raise SystemExit(f"error: {args.predictor or args.encoder} holds no action-conditioned predictor")
    device = torch.device(args.device)
    dtype = dtype or args.dtype or "auto"
    return WorldModel(enc_file.encoder.to(device), pred_file.predictor.to(device), dtype=dtype)


def _plan_presets() -> dict:
    from vjepa_fast.planning import PlannerConfig

    return {"cpu-small": PlannerConfig.cpu_small, "cpu-small-efficient": PlannerConfig.cpu_small_efficient,
            "cpu-small-meta-efficient": PlannerConfig.cpu_small_meta_efficient, "paper": PlannerConfig.paper,
            "meta": PlannerConfig.meta}


def _cmd_plan(args: argparse.Namespace) -> int:
    import time

    import torch

    from vjepa_fast.config import config_from_args
    from vjepa_fast.planning.planners import make_planner, parse_planner_options, planner_options

    try:
        cfg = config_from_args(args)
        options = parse_planner_options(args.planner_option)
        planner_options(args.planner, **options)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise SystemExit(f"error: vjepa-fast plan: {exc}") from None
    missing = [f"--{k}" for k in ("encoder", "obs", "goal") if getattr(args, k) is None]
    if missing:
        raise SystemExit(f"error: vjepa-fast plan: {', '.join(missing)} required")
    wm = _load_world_model(args, cfg.dtype)
    state = torch.tensor([args.state], dtype=torch.float32, device=args.device)
    planner = make_planner(args.planner, wm, cfg, **options)
    cfg = planner.config
    z_obs = wm.encode_image_files([args.obs]).to(args.device)
    z_goal = wm.encode_image_files([args.goal]).to(args.device)
    t0 = time.perf_counter()
    res = planner.plan(z_obs, state, z_goal).cpu()  # .cpu(): the only host sync of the plan
    dt = time.perf_counter() - t0
    from vjepa_fast.precision import dtype_name

    coarse_dt = dtype_name(planner.coarse_model.dtype) if cfg.coarse_iterations else ""
    coarse = f" ({cfg.coarse_iterations} in {coarse_dt})" if cfg.coarse_iterations else ""
    extras = "".join([", elites kept" if cfg.keep_elites else "", ", best returned" if cfg.return_best else ""])
    print(f"plan ({args.planner}): {cfg.num_samples} samples, top-{cfg.topk}, {cfg.iterations} iterations{coarse}, "
          f"horizon {cfg.horizon}, {dtype_name(wm.dtype)}{extras}, {int(res.stats['model_evals'])} model "
          f"evaluations, {dt:.2f} s")
    for h, a in enumerate(res.actions[0].tolist()):
        print(f"step {h}: dxyz = ({a[0]:+.4f}, {a[1]:+.4f}, {a[2]:+.4f}) m  drot = (0, 0, 0)  dgrip = {a[6]:+.3f}")
    print(f"energy of the plan: {res.energy[0].item():.5f}")
    print("best energy per iteration: " + " ".join(f"{e:.5f}" for e in res.stats["best"][0].tolist()))
    return 0


def _cmd_energy_landscape(args: argparse.Namespace) -> int:
    import torch

    from vjepa_fast.planning.landscape import energy_landscape, save_landscape_png

    wm = _load_world_model(args)
    state = torch.tensor([args.state], dtype=torch.float32, device=args.device)
    z_obs = wm.encode_image_files([args.obs]).to(args.device)
    z_goal = wm.encode_image_files([args.goal]).to(args.device)
    grid, xs, ys = energy_landscape(wm, z_obs, state, z_goal, steps=args.steps, extent=args.extent,
                                    plane=args.plane, fixed=args.fixed)
    out = save_landscape_png(grid, xs, ys, args.out, plane=args.plane,
                             title=f"energy over one-step d{args.plane[0]}/d{args.plane[1]}")
    iy, ix = divmod(int(grid.argmin()), grid.shape[1])
    print(f"wrote {out}; minimum {grid.min().item():.5f} at d{args.plane[0]} = {xs[ix]:+.4f}, "
          f"d{args.plane[1]} = {ys[iy]:+.4f} m")
    return 0


def _add_model_args(p: argparse.ArgumentParser, *, required: bool = True, dtype: bool = True) -> None:
    """The world model's files, the two images and the state; `dtype`: also --dtype (plan: PlannerConfig's)."""
    p.add_argument("--encoder", required=required, help="encoder file (.safetensors from vjepa_fast, or Meta's .pt)")
    p.add_argument("--predictor", default=None, help="AC predictor file (default: the encoder file, e.g. "
                   "vjepa2-ac-vitg.pt holds both)")
    p.add_argument("--obs", required=required, help="observation image (PNG/JPEG)")
    p.add_argument("--goal", required=required, help="goal image")
    p.add_argument("--state", type=float, nargs=7, default=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
                   metavar="S", help="end-effector state: x y z (m) roll pitch yaw (rad, extrinsic xyz) gripper")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    if not dtype:
        return
    from vjepa_fast.precision import DTYPE_CHOICES

    p.add_argument("--dtype", default=None, choices=DTYPE_CHOICES,
                   help="rollout dtype (default: the preset's, 'auto' for cpu-small and paper: bfloat16 on a GPU "
                        "or a CPU with AMX / AVX512_BF16, float32 elsewhere; VJEPA_FAST_CPU_FALLBACK=1 forces "
                        "the AVX2-only behaviour)")


def _parse_encoder_spec(item: str):
    from vjepa_fast.diagnostics import encoder_from_spec

    try:
        return encoder_from_spec(item)
    except ValueError as exc:
        raise SystemExit(f"error: --encoder {item!r}: {exc}") from exc


def _cmd_energy_quality(args: argparse.Namespace) -> int:
    from vjepa_fast.data.episodes import find_episodes
    from vjepa_fast.diagnostics import energy_quality, episode_latents, write_energy_report

    eps = [p for d in args.episodes for p in find_episodes(d)]
    if not eps:
        raise SystemExit(f"error: no episode under {args.episodes}")
    results = []
    for item in args.encoder:
        name, enc = _parse_encoder_spec(item)
        z, xyz = episode_latents(enc, eps, max_frames=args.max_frames, seed=args.seed, target=args.target)
        results.append(energy_quality(z, xyz, name=name, near=args.near_cm / 100, max_frames=None))
        print(results[-1].row())
    files = write_energy_report(results, args.out, title=args.title)
    print(files["table"].read_text())
    print(f"energy quality: {files['png']}")
    return 0


def _robot_main(module: str, argv: list[str]) -> int:
    """Runs robot/simtools/<module>.py's main: the simulator tools sit beside the package in the repository
    checkout (robot/ drives the planner, the library never imports it), so they are found from this file's
    location."""
    import importlib
    from pathlib import Path

    try:
        mod = importlib.import_module(f"robot.simtools.{module}")
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[1]
        if not (root / "robot" / "simtools" / f"{module}.py").is_file():
            raise SystemExit(f"error: robot/simtools/{module}.py not found: `vjepa-fast {module.replace('_', '-')}` needs the "
                             "repository checkout (pip install -e .)") from None
        sys.path.insert(0, str(root))
        mod = importlib.import_module(f"robot.simtools.{module}")
    return int(mod.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa-fast",
        description="Fast V-JEPA 2 / V-JEPA 2-AC: pretraining, action-conditioned training, latent planning, probes.",
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
own `preset = "..."`; --preset wins over it), then KEY=VALUE overrides in TOML syntax, e.g.
  vjepa-fast pretrain --config configs/pretrain_tiny_cpu.toml
  vjepa-fast pretrain --preset tiny_cpu data.sources='["videos/"]' steps=500
  torchrun --nproc_per_node 8 -m vjepa_fast.cli pretrain --config configs/pretrain_vitl.toml optim.lr_peak=4e-4
Runs resume from the latest checkpoint in OUT_DIR/checkpoints unless --no-resume. Outputs in out_dir:
metrics.csv, tensorboard/, loss.png, checkpoints/step_*/ (DCP, resumable on any process count),
encoder.safetensors (the target encoder, for downstream use).""",
    )
    from vjepa_fast.train.config import PretrainConfig, add_config_arguments

    add_config_arguments(p, PretrainConfig, "vit_large")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps of this invocation")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if checkpoints exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_pretrain)

    sub.add_parser("probe", add_help=False,
                   help="attentive probes on a frozen encoder: `probe train|eval --config FILE` (video "
                        "classification top-1/top-5, anticipation recall@5; Meta's and HF's released probes "
                        "load; see `vjepa-fast probe --help`)")

    sub.add_parser("sim-eval", add_help=False,
                   help="closed-loop success rate on the embedded simulator: unseen goals, our model and baselines "
                        "(robot/simtools/sim_eval.py; see `vjepa-fast sim-eval --help`)")

    sub.add_parser("energy-ceiling", add_help=False,
                   help="diagnostic (b): the planner and our latent energy with the simulator itself as the model "
                        "(robot/simtools/ceiling.py; see `vjepa-fast energy-ceiling --help`)")

    sub.add_parser("train-bc", add_help=False,
                   help="goal-image-conditioned behaviour cloning on a latent cache: the manipulation baseline "
                        "(see `vjepa-fast train-bc --help`)")
    sub.add_parser("distill", add_help=False,
                   help="an amortised policy distilled from the planner's decisions (DAgger in the world model's "
                        "latents): one forward per decision, or CEM's initial mean (see `vjepa-fast distill --help`)")
    sub.add_parser("train-ac", add_help=False,
                   help="V-JEPA 2-AC post-training from recorded episodes or DROID (--config FILE or --preset; "
                        "the latent cache is built when needed; see `vjepa-fast train-ac --help`)")

    p = sub.add_parser(
        "plan",
        help="plan end-effector actions from an observation image to a goal image (CEM in latent space)",
        description="Encodes both images with the frozen encoder, then runs the CEM planner (SPEC section 6) "
        "with the action-conditioned predictor and prints the planned actions and their energy.",
    )
    _add_model_args(p, required=False, dtype=False)
    from vjepa_fast.config import Flag, add_config_arguments
    from vjepa_fast.planning.cem import BOUNDS, GRIPPER_MODES, PlannerConfig
    from vjepa_fast.precision import DTYPE_CHOICES

    add_config_arguments(
        p, PlannerConfig, "cpu-small", presets=_plan_presets(), flags=True,
        choices={"bound": BOUNDS, "gripper": GRIPPER_MODES, "dtype": DTYPE_CHOICES, "coarse_dtype": DTYPE_CHOICES},
        aliases=[Flag("--samples", "num_samples")],
        helps={"dtype": "rollout dtype: auto = bfloat16 on a GPU or a CPU with AMX / AVX512_BF16, float32 elsewhere "
                        "(VJEPA_FAST_CPU_FALLBACK=1 forces the AVX2-only behaviour)"})
    p.epilog = ("presets: cpu-small: 200 samples, 5 iterations, horizon 2; cpu-small-efficient: 48 samples, 10 "
                "iterations (6 coarse in bf16 where native, 4 in fp32), elites kept, best returned; paper: 800, 10, "
                "1; meta: Meta's cem() algorithm and defaults, 100 samples, 100 iterations, horizon 1, gripper "
                "planned; cpu-small-meta-efficient: Meta's cem problem at cpu-small sizes (horizon 2, 0.05 m box, "
                "gripper planned, dead band 0.25) searched with 32 samples x 8 fp32 iterations, elites kept, best "
                "returned")
    from vjepa_fast.planning.planners import add_planner_arguments

    add_planner_arguments(p)
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser(
        "energy-landscape",
        help="write a PNG heatmap of the planning energy over a grid of one-step xyz deltas",
    )
    _add_model_args(p)
    p.add_argument("--steps", type=int, default=21, help="grid points per axis (default 21)")
    p.add_argument("--extent", type=float, default=0.075, help="grid half-width in m (default 0.075)")
    p.add_argument("--plane", default="xy", choices=["xy", "xz", "yz"], help="axes varied (default xy)")
    p.add_argument("--fixed", type=float, default=0.0, help="delta of the third axis (m, default 0)")
    p.add_argument("--out", default="energy_landscape.png", help="PNG to write")
    p.set_defaults(func=_cmd_energy_landscape)

    p = sub.add_parser(
        "energy-quality",
        help="diagnostic (a): does the planner's latent energy rank end-effector distance? (table + PNG)",
        description="Encodes frames of recorded episodes exactly as the planner does and reports the Spearman "
        "rank correlation between the latent L1 of two frames (the planner's energy) and the distance of "
        "their end-effector positions, over all pairs and over pairs closer than --near-cm; writes "
        "energy_quality.md/.json/.png to --out. Compare encoders (and cameras, via their episodes) with it.",
    )
    p.add_argument("--episodes", nargs="+", required=True, help="folders of episodes (held-out ones)")
    p.add_argument("--encoder", action="append", required=True, metavar="NAME=SPEC",
                   help="NAME=FILE (.safetensors or Meta .pt: its encoder) or NAME=random:PRESET[@IMG] (random "
                        "weights, seed 0, e.g. random:tiny@128); repeatable")
    p.add_argument("--max-frames", type=int, default=400, help="frames drawn from the episodes (pairs ~ F^2/2)")
    p.add_argument("--near-cm", type=float, default=10.0, help="the 'near' pairs: closer than this, cm")
    p.add_argument("--target", default="ee", metavar="ee|OBJECT",
                   help="whose position the energy and the probe are scored on: the end effector (ee, default) or "
                        "a scene object (e.g. red_cube: per-frame positions of robot/simtools/generate_physics.py episodes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--title", default="")
    p.add_argument("--out", default="runs/energy_quality", help="output folder")
    p.set_defaults(func=_cmd_energy_quality)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-ac"]:  # its own argument parser (vjepa_fast.train.ac.main)
        from vjepa_fast.train.ac import main as train_ac_main

        return train_ac_main(argv[1:])
    if argv[:1] == ["train-bc"]:
        from vjepa_fast.train.bc import main as train_bc_main

        return train_bc_main(argv[1:])
    if argv[:1] == ["distill"]:
        from vjepa_fast.train.distill import main as distill_main

        return distill_main(argv[1:])
    if argv[:1] == ["probe"]:  # attentive probes: its own parser (vjepa_fast.probes.run.main)
        from vjepa_fast.probes.run import main as probe_main

        return probe_main(argv[1:])
    if argv[:1] == ["sim-eval"]:  # the robot side's evaluation (robot/simtools/sim_eval.py), its own parser
        return _robot_main("sim_eval", argv[1:])
    if argv[:1] == ["energy-ceiling"]:
        return _robot_main("ceiling", argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
