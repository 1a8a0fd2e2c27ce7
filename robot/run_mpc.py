#!/usr/bin/env python3
"""Closed-loop latent MPC with V-JEPA 2-AC on a Franka arm, or on the embedded simulator.

Simulation (everything on this machine; franky-sim speaks the real libfranka protocol on loopback). Without a
checkpoint, --sim plans with robot/assets/sim_demo_world_model.safetensors, a tiny world model trained on this
simulator (benchmarks/SIM_RECIPE.md: 19 of 20 unseen goals reached within 3 cm, 0.15 s of planning per step on
2 CPU cores; --random-model tiny forces random weights):
    python robot/run_mpc.py --sim --goal-offset 0.06 0.06 -0.06 --max-steps 8 --log-dir runs/mpc
    python robot/run_mpc.py --sim --goal goal.png --encoder enc.safetensors --predictor vjepa2-ac-vitg.pt

Real rig (the control PC):
  1. A real-time kernel (PREEMPT_RT) on the control PC, the arm's FCI enabled in Desk, brakes released, the
     arm in its "ready" pose, the user stop in reach. Real time is ENFORCED (RealtimeConfig.kEnforce): run
     as a user allowed real-time scheduling (e.g. `ulimit -r 99` via /etc/security/limits.conf).
  2. A camera looking at the workspace like DROID's exterior camera: --camera opencv --camera-device 0, or
     --camera realsense. Frames are centre-cropped to a square and resized to 256 px.
  3. python robot/run_mpc.py --robot-ip 172.16.0.2 --camera realsense --goal goal.png \\
         --encoder vitg.safetensors --predictor vjepa2-ac-vitg.pt --max-steps 20 --log-dir runs/real \\
         --rt-priority 80 --control-cpu 3
     --robot-ip refuses to start without a world-model checkpoint (--predictor): random weights only in --sim.
     --rt-priority gives the 1 kHz control process SCHED_FIFO at that priority, --control-cpu pins it to one
     CPU (ideally one isolated with isolcpus=, away from the planner's threads).
Safety: targets are clamped to --workspace-min/--workspace-max, one action moves at most --max-step m (L2
ball by default; the planner searches the same --bound, so the arm executes the action that was scored), the
arm's collision thresholds are libfranka's example defaults (--torque-thresholds, --force-thresholds), the
1 kHz loop limits Cartesian velocity/acceleration/jerk (well inside the FR3's limits), a plan with NaN/inf
is refused, and without a new plan for --planner-timeout s the arm brakes and holds. Ctrl-C or any error
brakes the arm to a stop and finishes the motion cleanly. Logs: DIR/episode (our episode format, readable
by `vjepa-fast train-ac`), DIR/mpc_log.jsonl, DIR/mpc.png, DIR/control_log.npz, DIR/summary.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `robot` and `vjepa_fast` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

_LOG = logging.getLogger("run_mpc")
# Trained on this simulator (scripts/sim_recipe.sh; benchmarks/SIM_RECIPE.md): the
# default world model of --sim when no checkpoint is given.
SIM_DEMO_MODEL = Path(__file__).resolve().parent / "assets" / "sim_demo_world_model.safetensors"
SIM_MANIP_MODEL = Path(__file__).resolve().parent / "assets" / "sim_manip_world_model.safetensors"


def _sim_default_model(args: argparse.Namespace) -> Path:
    """The shipped model --sim plans with when none is given: the manipulation one for --task, else the reach one."""
    return SIM_MANIP_MODEL if getattr(args, "task", None) else SIM_DEMO_MODEL


def load_image(path: str, what: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] from an image file, or a ValueError naming the argument."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {path!r} does not exist")
    try:
        with Image.open(p) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{what} {path!r} is not an image ({exc})") from exc


def build_world_model(args: argparse.Namespace):
    import torch

    from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor, EncoderConfig, VideoEncoder
    from vjepa_fast.planning import WorldModel

    encoder = predictor = None
    default = _sim_default_model(args)
    if args.sim and not args.predictor and not args.encoder and args.random_model is None and default.is_file():
        _LOG.info("no --predictor given: using the shipped simulator world model %s (--random-model to plan with "
                  "random weights instead)", default)
        args.predictor = str(default)
    if args.predictor:
        if args.predictor.endswith(".safetensors"):
            from vjepa_fast.checkpoints import load_safetensors

            loaded = load_safetensors(args.predictor)
        else:
            from vjepa_fast.checkpoints import load_official

            loaded = load_official(args.predictor)
        predictor, encoder = loaded.predictor, loaded.encoder
        if not isinstance(predictor, ActionConditionedPredictor):
            raise ValueError(f"--predictor {args.predictor} holds no action-conditioned predictor")
    if args.encoder:
        from vjepa_fast.checkpoints import load_official, load_safetensors

        enc = (load_safetensors(args.encoder) if args.encoder.endswith(".safetensors")
               else load_official(args.encoder)).encoder
        if enc is None:
            raise ValueError(f"--encoder {args.encoder} holds no encoder")
        encoder = enc
    if predictor is None:
        preset = args.random_model or "tiny"
        _LOG.warning("no --predictor given: using a RANDOMLY INITIALISED %r world model. The loop, the safety "
                     "layer and the logs are real; the plans are not meaningful.", preset)
        torch.manual_seed(args.seed)
        encoder = VideoEncoder(getattr(EncoderConfig, preset)())
        predictor = ActionConditionedPredictor(getattr(ACPredictorConfig, preset)())
    if encoder is None:
        raise ValueError("the predictor checkpoint has no encoder: pass --encoder")
    return WorldModel(encoder.eval(), predictor.eval(), dtype=args.dtype)


# run_mpc's planner defaults (PlannerConfig's others): CPU-sized, one action per plan; with --task, sim-eval's sizes.
PLANNER_DEFAULTS = {"num_samples": 64, "topk": 8, "iterations": 3, "horizon": 1}


def _add_planner_config_arguments(p: argparse.ArgumentParser) -> None:
    """PlannerConfig's flags, generated (vjepa_fast.config), with run_mpc's defaults and older spellings. max_norm
    and bound come from --max-step and --bound, which bound the safety layer too."""
    from vjepa_fast.config import Flag, add_config_arguments
    from vjepa_fast.planning.cem import GRIPPER_MODES, PlannerConfig
    from vjepa_fast.precision import DTYPE_CHOICES

    add_config_arguments(
        p, PlannerConfig, base=PlannerConfig(**PLANNER_DEFAULTS), flags=True, positional=False,
        exclude=("max_norm", "bound"), choices={"gripper": GRIPPER_MODES, "dtype": DTYPE_CHOICES,
                                                "coarse_dtype": DTYPE_CHOICES},
        aliases=[Flag("--samples", "num_samples"),
                 Flag("--momentum", ("momentum_pos", "momentum_grip"), same=True,
                      help="momentum of the mean/std updates of every dim (both momentum_pos and momentum_grip)"),
                 Flag("--plan-gripper", "gripper", const="plan", help="plan the gripper too (gripper = plan)")],
        helps={"horizon": "actions per plan (the energy scores the frame after the last one: with 2+ the executed "
                          "first action is only loosely pinned down; SIM_RECIPE.md)",
               "dtype": "rollout dtype; auto: bfloat16 where the GPU / CPU does bf16 natively (AMX, AVX512_BF16), "
                        "float32 elsewhere (VJEPA_FAST_CPU_FALLBACK=1: the AVX2-only behaviour)",
               "gripper": "hold or plan the gripper (plan with --task)"})


def planner_config(args: argparse.Namespace):
    """The PlannerConfig of a run: run_mpc's defaults, max_norm = --max-step, bound = --bound, the gripper planned
    with --task; then --config, the planner flags and --set. Prints it and exits on --print-config."""
    from vjepa_fast.config import config_from_args
    from vjepa_fast.planning import PlannerConfig

    sizes = dict(PLANNER_DEFAULTS)
    if args.task:  # sim-eval's CEM for the task (192 x 4, its gripper refit; MANIP_RECIPE.md tries 7, 9), unless
        # flags say otherwise
        from robot.simtools.task_eval import TaskEvalConfig

        t = TaskEvalConfig(task=args.task)
        sizes.update(num_samples=t.samples, topk=t.topk, iterations=t.iterations, horizon=t.horizon,
                     gripper_range_fit=t.fit)
    base = PlannerConfig(**sizes, max_norm=args.max_step, bound=args.bound,
                         gripper="plan" if args.task else "hold", gripper_range=bool(args.task))

    def check(cfg: PlannerConfig) -> None:
        if (cfg.max_norm, cfg.bound) != (args.max_step, args.bound):
            raise ValueError("max_norm and bound are --max-step and --bound here (the safety layer executes what "
                             "the planner scored): set those instead")

    return config_from_args(args, PlannerConfig, base=base, check=check)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from robot.sim import CAMERAS, DEFAULT_CAMERA, resolve_sim_camera

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--sim", action="store_true", help="start franky-sim (MuJoCo) on loopback and use it")
    where.add_argument("--robot-ip", help="IP of a real Franka arm (FCI); real time is enforced")
    g = p.add_argument_group("goal")
    g.add_argument("--goal", nargs="+", metavar="IMAGE", help="goal image, or a sequence of sub-goal images")
    g.add_argument("--goal-offset", nargs=3, type=float, metavar=("DX", "DY", "DZ"),
                   help="(--sim) make the goal image by moving the arm by this offset (m) and rendering it")
    g.add_argument("--subgoal-threshold", type=float, default=None,
                   help="latent distance below which the next sub-goal is taken")
    g.add_argument("--task", default=None, choices=("grasp", "push", "pick_place"),
                   help="(--sim) a manipulation task of robot/simtools/tasks.py: the layout of --task-seed placed in the "
                        "simulator, its sub-goal images rendered by the scripted oracle, the gripper planned and "
                        "commanded open/closed, sub-goals switched by step budget or plateau; prints success")
    g.add_argument("--task-seed", type=int, default=None,
                   help="layout seed of --task (default 0: sim-eval's first layout; any seed >= 0 is an evaluation layout, never a training one)")
    g.add_argument("--approach-legs", type=int, default=None,
                   help="(--task) legs from the start to the first sub-goal: N-1 intermediate sub-goal images on the "
                        "way (default: sim-eval's, 2; 1 = straight to the hand above the cube)")
    g.add_argument("--stroke-legs", type=int, default=None,
                   help="(--task push / pick_place) legs of the stroke that moves the cube (the push; the carry from "
                        "lifted to over the target): N-1 intermediate sub-goal images on it (default: sim-eval's)")
    g.add_argument("--lower-legs", type=int, default=None,
                   help="(--task pick_place) legs of the descent with the cube from over the target to just above "
                        "it: N-1 intermediate sub-goal images on it (default: sim-eval's, 2)")
    m = p.add_argument_group("world model")
    m.add_argument("--encoder", help="encoder checkpoint (our .safetensors or Meta's .pt)")
    m.add_argument("--predictor", help="AC predictor checkpoint (Meta's vjepa2-ac-*.pt or our .safetensors)")
    m.add_argument("--random-model", default=None, choices=["tiny", "cpu_small"],
                   help="plan with a randomly initialised model of this preset (without a checkpoint: tiny, except "
                        "that --sim then uses the shipped model: robot/assets/sim_manip_world_model.safetensors with --task, "
                        "else robot/assets/sim_demo_world_model.safetensors)")
    c = p.add_argument_group("planner (CEM by default; --planner picks another, with the same sizes)")
    from vjepa_fast.planning.planners import add_planner_arguments

    add_planner_arguments(c)
    c.add_argument("--bound", default=None, choices=["ball", "box"],
                   help="step bound of the planner AND the safety layer: L2 ball (default) or per-axis box of "
                        "--max-step (a box step reaches sqrt(3) x --max-step; the default with --task, as the "
                        "manipulation data's moves)")
    _add_planner_config_arguments(p)
    s = p.add_argument_group("safety and timing")
    s.add_argument("--max-step", type=float, default=0.05, help="largest translation per action, m")
    s.add_argument("--workspace-min", nargs=3, type=float, default=(0.25, -0.45, 0.08))
    s.add_argument("--workspace-max", nargs=3, type=float, default=(0.80, 0.45, 0.75))
    s.add_argument("--max-velocity", type=float, default=0.25, help="Cartesian, m/s")
    s.add_argument("--max-acceleration", type=float, default=1.5, help="m/s^2")
    s.add_argument("--max-jerk", type=float, default=30.0, help="m/s^3")
    s.add_argument("--planner-timeout", type=float, default=120.0, help="s without a plan before the arm holds")
    s.add_argument("--settle-timeout", type=float, default=30.0, help="s to reach each target")
    s.add_argument("--error-recovery", action="store_true", help="run automatic_error_recovery() after a reflex")
    s.add_argument("--torque-thresholds", nargs=7, type=float, metavar="NM", default=None,
                   help="collision thresholds of joints 1-7, Nm (lower = upper; default: libfranka's example "
                        "20 20 18 18 16 14 12)")
    s.add_argument("--force-thresholds", nargs=6, type=float, metavar="N", default=None,
                   help="Cartesian collision thresholds x y z (N), rx ry rz (Nm) (lower = upper; default: "
                        "libfranka's example 20 20 20 25 25 25)")
    s.add_argument("--rt-priority", type=int, default=None, metavar="1-99",
                   help="SCHED_FIFO priority of the 1 kHz control process (needs real-time rights: ulimit -r)")
    s.add_argument("--control-cpu", type=int, default=None, metavar="CPU",
                   help="pin the 1 kHz control process to this CPU (sched_setaffinity)")
    r = p.add_argument_group("run")
    r.add_argument("--max-steps", type=int, default=None,
                   help="MPC steps (plans executed); default 10, with --task the sum of its sub-goals' budgets "
                        "(sim-eval's: grasp 17, push 20, pick_place 33: 2 approach legs, 2 push legs, 2 descent legs)")
    r.add_argument("--log-dir", default="runs/mpc", help="where the episode, logs and plots go")
    r.add_argument("--camera", default=None, choices=["sim", "opencv", "realsense"],
                   help="default: sim with --sim, opencv otherwise")
    r.add_argument("--sim-camera", default=None, metavar="NAME",
                   help=f"(--sim) which of the scene's cameras the sim camera renders ({', '.join(CAMERAS)}; default "
                        f"the one the model file records it was trained on, else {DEFAULT_CAMERA}); the goal image is "
                        "rendered through it too")
    r.add_argument("--camera-device", default=0, help="OpenCV device index or path")
    r.add_argument("--camera-fps", type=float, default=10.0)
    r.add_argument("--no-gripper", action="store_true", help="do not connect to the gripper")
    r.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.bound is None:
        args.bound = "box" if args.task else "ball"
    try:
        args.planner_config = planner_config(args)  # prints it and exits on --print-config
    except (ValueError, TypeError, FileNotFoundError) as exc:
        p.error(str(exc))
    args.seed, args.dtype = args.planner_config.seed, args.planner_config.dtype
    if not (args.sim or args.robot_ip):
        p.error("one of the arguments --sim --robot-ip is required")
    if args.task is not None:
        if not args.sim:
            p.error("--task needs --sim (the layout is placed in the simulator)")
        if args.goal is not None or args.goal_offset is not None:
            p.error("--task makes its own goal images: drop --goal / --goal-offset")
        if args.sim_camera is None and not (args.predictor and _recorded_camera(args.predictor)):
            args.sim_camera = "table_right"
    elif args.task_seed is not None:
        p.error("--task-seed needs --task")
    if args.approach_legs is not None and (args.task is None or args.approach_legs < 1):
        p.error("--approach-legs needs --task and a value >= 1")
    if args.stroke_legs is not None and (args.task is None or args.stroke_legs < 1):
        p.error("--stroke-legs needs --task and a value >= 1")
    if args.lower_legs is not None and (args.task is None or args.lower_legs < 1):
        p.error("--lower-legs needs --task and a value >= 1")
    if args.goal is None and args.goal_offset is None and args.task is None:
        p.error("give --goal IMAGE [IMAGE ...], (with --sim) --goal-offset DX DY DZ, or (with --sim) --task NAME")
    if args.goal_offset is not None and not args.sim:
        p.error("--goal-offset needs --sim (it renders the goal in the simulator)")
    args.max_steps_given = args.max_steps is not None
    if args.max_steps is None:
        args.max_steps = 10
    if args.max_steps < 1:
        p.error(f"--max-steps must be >= 1, got {args.max_steps}")
    if args.sim_camera is not None and (not args.sim or args.camera not in (None, "sim")):
        p.error("--sim-camera needs --sim and the sim camera")
    model_file = args.predictor or (str(_sim_default_model(args)) if args.sim and not args.encoder
                                    and args.random_model is None else None)
    try:
        args.sim_camera = resolve_sim_camera(args.sim_camera, model_file)
    except ValueError as exc:
        p.error(f"--sim-camera: {exc}")
    if args.rt_priority is not None and not 1 <= args.rt_priority <= 99:
        p.error(f"--rt-priority must be a SCHED_FIFO priority in 1-99, got {args.rt_priority}")
    if args.robot_ip and not args.predictor:
        p.error("--robot-ip needs a world-model checkpoint: pass --predictor (e.g. vjepa2-ac-vitg.pt); a random or "
                "demo world model is only used with --sim")
    if args.robot_ip and args.random_model is not None:
        p.error("--random-model is only allowed with --sim (a random world model must never drive a real arm)")
    return args


def _recorded_camera(model_file: str) -> str | None:
    from robot.sim import model_camera

    return model_camera(model_file)


def _collision_thresholds(args: argparse.Namespace) -> dict[str, tuple[float, ...]]:
    """SafetyConfig fields for the thresholds given on the command line (the defaults stay SafetyConfig's)."""
    out = {}
    for kind, values in (("torque", args.torque_thresholds), ("force", args.force_thresholds)):
        if values is not None:
            out[f"lower_{kind}_thresholds"] = out[f"upper_{kind}_thresholds"] = tuple(values)
    return out


def _model_data_box(model_file: str | None) -> np.ndarray | None:
    """[2, 3] (low, high) of the end-effector box the model file's training data covered, if it records one."""
    if not model_file or not str(model_file).endswith(".safetensors"):
        return None
    from vjepa_fast.checkpoints import safetensors_info

    box = safetensors_info(model_file).get("data_box")
    return None if box is None else np.asarray(box, dtype=np.float64)


def _render_goal(control, camera, offset: np.ndarray, settle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moves the arm by `offset`, renders the goal frame, moves back. Returns (frame, goal xyz, start xyz)."""
    from robot import shm

    start = control.read_status()[shm.COMMANDED_T].reshape(4, 4, order="F")[:3, 3].copy()
    goal = np.clip(start + offset, control.safety.workspace_min, control.safety.workspace_max)
    for target in (goal, start):
        control.send_target(target, 0.0)
        if not control.wait_settled(settle):
            raise RuntimeError("the arm did not reach the goal pose while rendering the goal image")
        if target is goal:
            time.sleep(0.3)  # a fresh frame after the arm stopped
            frame = camera.latest()[0]
    return frame, goal, start


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch

    from robot.camera import save_png
    from robot.mpc import GRIP_THRESHOLD, MPCRunner
    from robot.simtools.task_run import prepare_task, start_task
    from robot.rig import Rig
    from robot.safety import SafetyConfig
    from vjepa_fast.planning.planners import make_planner, parse_planner_options, planner_options

    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        goal_frames = [load_image(g, "--goal") for g in (args.goal or [])]
        task = None
        if args.task is not None:
            task = prepare_task(args, log_dir)
            goal_frames = task["goals"]
        safety = SafetyConfig(workspace_min=tuple(args.workspace_min), workspace_max=tuple(args.workspace_max),
                              max_step=args.max_step, max_velocity=args.max_velocity,
                              max_acceleration=args.max_acceleration, max_jerk=args.max_jerk,
                              planner_timeout=args.planner_timeout, bound=args.bound,
                              **_collision_thresholds(args))
        planner_cfg = args.planner_config
        planner_opts = parse_planner_options(args.planner_option)
        planner_options(args.planner, **planner_opts)
        world_model = build_world_model(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"run_mpc: error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # leave a core to the 1 kHz loop
    planner = make_planner(args.planner, world_model, planner_cfg, **planner_opts)

    rig = None
    try:
        rig = Rig(log_dir, safety, sim=args.sim, robot_ip=args.robot_ip, camera=args.camera,
                  camera_fps=args.camera_fps, camera_device=args.camera_device, gripper=not args.no_gripper,
                  error_recovery=args.error_recovery, sim_camera=args.sim_camera, rt_priority=args.rt_priority,
                  control_cpu=args.control_cpu, sim_objects=task["instance"].layout.objects if task else None).start()
        control, camera, gripper = rig.control, rig.camera, rig.gripper
        goal_xyz = None
        stop_when = None
        if task is not None:
            stop_when = start_task(rig, safety, task, args.settle_timeout)
        if args.goal_offset is not None:
            frame, goal_xyz, _ = _render_goal(control, camera, np.asarray(args.goal_offset), args.settle_timeout)
            save_png(frame, log_dir / "goal.png")
            goal_frames = [frame] + goal_frames
            _LOG.info("goal image rendered at end-effector position %s -> %s", np.round(goal_xyz, 4).tolist(),
                      log_dir / "goal.png")
            box = _model_data_box(args.predictor)
            if box is not None and not (np.all(goal_xyz >= box[0] - 0.01) and np.all(goal_xyz <= box[1] + 0.01)):
                _LOG.warning("the goal %s lies outside the box the world model was trained in (%s to %s): expect "
                             "it to plan badly there", np.round(goal_xyz, 3).tolist(), np.round(box[0], 3).tolist(),
                             np.round(box[1], 3).tolist())
        runner = MPCRunner(world_model, planner, control, camera, safety, goal_frames, log_dir, gripper=gripper,
                           settle_timeout=args.settle_timeout, goal_xyz=goal_xyz,
                           subgoal_threshold=args.subgoal_threshold,
                           subgoal_budgets=task["budgets"] if task else None, binary_gripper=task is not None,
                           grip_threshold=task["grip_threshold"] if task else GRIP_THRESHOLD,
                           stop_when=stop_when)
        summary = runner.run(args.max_steps if task is None or args.max_steps_given else task["max_steps"],
                             stop_control=task is None)
        if task is not None:
            task["result"] = task["judge"]()
            rig.control.stop()
    except KeyboardInterrupt:
        print("run_mpc: interrupted: the arm was stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - report, then stop everything below
        print(f"run_mpc: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if rig is not None:
            rig.close()
    if task is not None and "result" in task:
        ok, info = task["result"]
        details = ", ".join(f"{k} {v:.3f}" for k, v in info.items())
        print(f"run_mpc: task {args.task} (layout seed {task['instance'].seed}): {'SUCCESS' if ok else 'FAILED'} "
              f"({details})")
    plan_s = [r.plan_seconds for r in summary.records]
    print(f"run_mpc: {summary.steps} steps, {'finished' if summary.ok else 'STOPPED: ' + summary.reason}; "
          f"planning {np.mean(plan_s) if plan_s else float('nan'):.2f} s/step; logs in {log_dir}")
    if summary.records and summary.records[0].ee_distance_to_goal is not None:
        start = summary.records[0].ee_distance_to_goal
        end = summary.final_ee_distance_to_goal
        end = summary.records[-1].ee_distance_to_goal if end is None else end
        verdict = ("REACHED (within 3 cm, sim-eval's success radius)" if end <= 0.03 else
                   "NOT reached (more than 3 cm away)")
        print(f"run_mpc: end-effector distance to the goal pose: {start:.3f} m -> {end:.3f} m: goal {verdict}")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
