"""V-JEPA 2-AC post-training (SPEC section 5): from recorded episodes (ours or raw DROID) to a trained
action-conditioned predictor, in one command.

    vjepa-fast train-ac --config configs/ac_sim_tiny.toml [KEY=VALUE ...]
    torchrun --nproc-per-node 8 -m vjepa_fast.train.ac --config configs/ac_droid_vitg.toml

Steps: (1) the latent cache: every frame of `data.sources` encoded once by the frozen `data.encoder`, built
when missing or stale and reused when fresh (`ensure_latent_cache`); (2) the teacher-forcing + rollout
objective (`train.ac_objective`) on a train split of the episodes, resumable bit for bit from DCP
checkpoints (`train.checkpointing`, the same checkpointer as pretraining), DDP under torchrun;
(3) held-out evaluation against the copy-the-latent baselines (`train.ac_eval`); (4) OUT_DIR/predictor.safetensors
and, with the encoder known, OUT_DIR/world_model.safetensors (encoder + predictor, with the camera and the
data box of the episodes), which `robot/run_mpc.py --predictor FILE` plans with.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vjepa_fast.constants import TARGET_LN_EPS  # noqa: F401  (re-exported: train.ac.TARGET_LN_EPS)
from vjepa_fast.models import ActionConditionedPredictor
from vjepa_fast.precision import amp_dtype
from vjepa_fast.train.ac_eval import ACEvalResult, ac_peak_memory, evaluate_ac
from vjepa_fast.train.ac_objective import _ln, _unwrap, ac_forward, ac_losses  # noqa: F401  (re-exported)
from vjepa_fast.train.ac_setup import (  # noqa: F401  (re-exported: train.ac.identity_init, ...)
    _build_predictor, _ClipBatches, _clip_weights, check_clips_fit, identity_init, load_frozen_encoder,
    prepare_latent_cache,
)
from vjepa_fast.train.config import ACDataConfig, ACTrainConfig, add_config_arguments, config_from_args
from vjepa_fast.train.optim import param_groups
from vjepa_fast.train.schedule import warmup_constant_cooldown

__all__ = [
    "ac_forward",
    "ac_losses",
    "warmup_constant_decay",
    "ACDataConfig",
    "ACTrainConfig",
    "ACEvalResult",
    "evaluate_ac",
    "identity_init",
    "prepare_latent_cache",
    "train_ac",
    "ac_peak_memory",
    "main",
]

_LOG = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- schedule


def warmup_constant_decay(
    step: int, *, lr_start: float, lr_peak: float, lr_final: float, warmup_steps: int, decay_steps: int,
    total_steps: int,
) -> float:
    """Linear warmup lr_start -> lr_peak over `warmup_steps`, constant, then linear decay to lr_final over the
    last `decay_steps` of `total_steps` (the V-JEPA 2-AC recipe: 7.5e-5 -> 4.25e-4, constant, -> 0)."""
    return warmup_constant_cooldown(step, lr_start=lr_start, lr_peak=lr_peak, lr_final=lr_final,
                                    warmup_steps=warmup_steps, constant_until=total_steps - decay_steps,
                                    cooldown_steps=decay_steps)


# ----------------------------------------------------------------------------------------------- outputs


def _plot_curves(log_csv: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [float(r["tf_loss"]) for r in rows], label="teacher forcing")
    ax.plot(steps, [float(r["ar_loss"]) for r in rows], label="rollout")
    ax.set_xlabel("step")
    ax.set_ylabel("L1")
    ax.legend()
    fig.tight_layout()
    tmp = png.with_name(f".{png.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)


def _run_eval(model, val_ds, cfg, device, step, eval_csv, final: bool = False) -> ACEvalResult:
    # Evaluation autocasts only on the GPU: on a CPU the k-step L1 is compared against fp32 baselines.
    eval_amp = amp_dtype(cfg.amp, device, what="train-ac autocast") if device.type == "cuda" else None
    res = evaluate_ac(model, val_ds, cfg.eval_max_steps, batch_size=cfg.batch_size, device=device,
                      amp_dtype=eval_amp, max_batches=cfg.eval_batches)
    new = not eval_csv.exists()
    with open(eval_csv, "a") as f:
        if new:
            f.write("step,k,teacher_forcing,rollout,copy_1step,copy_kstep\n")
        for k in range(len(res.rollout)):
            f.write(f"{step},{k + 1},{res.teacher_forcing[k]:.6f},{res.rollout[k]:.6f},"
                    f"{res.copy_1step[k]:.6f},{res.copy_kstep[k]:.6f}\n")
    _LOG.info("step %d\n%s", step, res.table())
    if final:
        out = eval_csv.parent
        (out / "eval_table.txt").write_text(res.table() + "\n")
        res.plot(out / "eval.png")
    return res


def _export(cfg: ACTrainConfig, model: ActionConditionedPredictor, per_source: list[list[str]] | None,
            step: int) -> dict[str, str]:
    """OUT_DIR/predictor.safetensors, and world_model.safetensors (encoder + predictor) when the run knows its
    encoder, recording the camera and the data box of the episodes (robot/run_mpc.py uses and checks them)."""
    from vjepa_fast.checkpoints import save_safetensors
    from vjepa_fast.data.episodes import episode_box, episode_cameras

    out = Path(cfg.out_dir)
    predictor = ActionConditionedPredictor(model.config)
    predictor.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    info: dict[str, Any] = {"recipe": "vjepa-fast train-ac", "steps": step, "init": cfg.init or "random"}
    files = {"predictor": str(save_safetensors(out / "predictor.safetensors", predictor.eval(), info=info))}
    if cfg.data.encoder and per_source is not None:
        episodes = [e for eps in per_source for e in eps]
        info.update({"encoder": cfg.data.encoder, "episodes": len(episodes)})
        cameras = episode_cameras(episodes)
        sims = [c.partition(":")[2] for c in cameras if c.startswith("sim:")]
        if len(sims) == 1 and len(cameras) == 1:
            info["camera"] = sims[0]  # robot/run_mpc.py --sim and sim-eval use it when no camera is given
        box = episode_box(episodes)
        if box is not None:
            info["data_box"] = box  # robot/run_mpc.py warns about goals outside it
        encoder = load_frozen_encoder(cfg.data.encoder)
        files["world_model"] = str(save_safetensors(out / "world_model.safetensors",
                                                    {"encoder": encoder, "predictor": predictor.eval()}, info=info))
    return files


# ----------------------------------------------------------------------------------------------- training


def _legacy_checkpoint(out: Path) -> Path | None:
    """The newest `checkpoints/step_*.pt` of a run made before train-ac used DCP checkpoints."""
    found = sorted((out / "checkpoints").glob("step_*.pt")) if (out / "checkpoints").is_dir() else []
    return found[-1] if found else None


def train_ac(cfg: ACTrainConfig, *, max_steps: int | None = None) -> dict[str, Any]:
    """Train (or resume) an AC predictor; returns {"step", "eval", "out_dir", "checkpoint", "files"}.

    The latents: `prepare_latent_cache` (built from data.sources when missing or stale). max_steps: stop after
    this many optimizer steps in total (for tests and preemption drills); the LR schedule still follows
    cfg.total_steps. With cfg.resume the run continues from the newest checkpoint in out_dir/checkpoints
    bit-exactly (model, AdamW, step, data position, RNG). Launched by torchrun (WORLD_SIZE > 1), it runs DDP
    (NCCL on GPU, gloo on CPU); rank 0 writes the logs and exports. "checkpoint" is the newest checkpoint
    folder (DCP; `train.checkpointing.load_module_state(path, predictor)` reads its weights).
    """
    from vjepa_fast.data.latent_cache import CachedClipDataset
    from vjepa_fast.train.checkpointing import CheckpointManager
    from vjepa_fast.train.distributed import DistContext

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device,
                      mode="ddp" if distributed else "none")
    out = Path(cfg.out_dir)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    cache, per_source = prepare_latent_cache(cfg, is_main=is_main, distributed=distributed, device=device)
    train_eps, val_eps = cache.split(cfg.val_fraction, seed=cfg.seed)
    check_clips_fit(cache, cfg, train_eps, val_eps)
    train_ds = CachedClipDataset(cache, frames_per_clip=cfg.frames_per_clip, frame_step=cfg.frame_step,
                                 episodes=train_eps)
    val_ds = CachedClipDataset(cache, frames_per_clip=cfg.frames_per_clip, frame_step=cfg.frame_step,
                               episodes=val_eps)
    model = _build_predictor(cfg, cache.tokens, cache.dim).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr_start, betas=cfg.betas, eps=cfg.eps)
    ckpt = CheckpointManager(out / "checkpoints", ctx, keep_last=cfg.keep_checkpoints)
    step = 0
    latest = ckpt.latest() if cfg.resume else None
    legacy = _legacy_checkpoint(out) if cfg.resume and latest is None else None
    if latest is not None:
        meta = ckpt.load_state(latest, {"model": model}, opt, trained="model")
        step = int(meta["step"])
        if is_main:
            _LOG.info("resumed from %s (step %d)", latest, step)
    elif legacy is not None:  # a run from before the DCP checkpoints: its torch.save file (tensors only)
        state = torch.load(legacy, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        _LOG.info("resumed from the older checkpoint %s (step %d)", legacy, step)
    else:
        torch.manual_seed(cfg.seed + 1 + rank)
    train_model: nn.Module = model
    if distributed:
        # static_graph: the unused extrinsics_encoder gets no gradient, the same every step, and the
        # predictor runs twice per step (teacher forcing, then the rollout).
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True
        )
    weights = _clip_weights(cfg, train_ds, cache, per_source)
    batches = _ClipBatches(len(train_ds), cfg.batch_size, world, rank, cfg.seed, start=step * cfg.grad_accum,
                           weights=weights)
    loader = DataLoader(train_ds, batch_sampler=batches, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    it = iter(loader)
    train_amp = amp_dtype(cfg.amp, device, what="train-ac autocast")
    amp = torch.autocast(device.type, dtype=train_amp) if train_amp is not None else nullcontext()
    log_csv, eval_csv = out / "log.csv", out / "eval.csv"
    if is_main and not log_csv.exists():
        log_csv.write_text("step,lr,loss,tf_loss,ar_loss,seconds\n")
    end = cfg.total_steps if max_steps is None else min(cfg.total_steps, max_steps)
    bar = None
    if is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_steps, initial=step, desc="train-ac", unit="step", dynamic_ncols=True)
    last_ckpt = latest or legacy  # a resumed run that has nothing left to do returns it
    nothing_to_do = step >= end
    acc = torch.zeros(2, dtype=torch.float64)
    acc_n = 0
    t0 = time.perf_counter()
    model.train()
    while step < end:
        lr = warmup_constant_decay(step, lr_start=cfg.lr_start, lr_peak=cfg.lr_peak, lr_final=cfg.lr_final,
                                   warmup_steps=cfg.warmup_steps, decay_steps=cfg.decay_steps,
                                   total_steps=cfg.total_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        step_losses = torch.zeros(2, device=device)
        for micro in range(cfg.grad_accum):
            batch = next(it)
            z = batch["latents"].to(device, non_blocking=True).flatten(1, 2)
            a = batch["actions"].to(device, non_blocking=True)
            s = batch["states"].to(device, non_blocking=True)
            sync = nullcontext() if (not distributed or micro == cfg.grad_accum - 1) else train_model.no_sync()
            with sync:
                with amp:
                    tf_loss, ar_loss = ac_losses(train_model, z, a, s, cfg.rollout_steps)
                    loss = (tf_loss + ar_loss) / cfg.grad_accum
                loss.backward()
            step_losses += torch.stack([tf_loss.detach(), ar_loss.detach()]).float() / cfg.grad_accum
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if distributed:
            torch.distributed.all_reduce(step_losses, op=torch.distributed.ReduceOp.AVG)
        acc += step_losses.double().cpu()
        acc_n += 1
        if bar is not None:
            bar.update(1)
        if is_main and (step % cfg.log_every == 0 or step == end):
            tf_m, ar_m = (acc / acc_n).tolist()
            with open(log_csv, "a") as f:
                f.write(f"{step},{lr:.6g},{tf_m + ar_m:.6f},{tf_m:.6f},{ar_m:.6f},{time.perf_counter() - t0:.2f}\n")
            if bar is not None:
                bar.set_postfix(tf=f"{tf_m:.4f}", ar=f"{ar_m:.4f}", lr=f"{lr:.2e}")
            acc.zero_()
            acc_n = 0
        if step % cfg.ckpt_every == 0 or step == end:
            meta = {"world_size": world, "config": cfg.to_dict(), "predictor_config": model.config.to_dict()}
            last_ckpt = ckpt.save_state(step, {"model": model}, opt, meta, trained="model")
            if is_main:
                _plot_curves(log_csv, out / "curves.png")
        if is_main and cfg.eval_every and step % cfg.eval_every == 0 and step != end:
            _run_eval(model, val_ds, cfg, device, step, eval_csv)
    if bar is not None:
        bar.close()
    result: dict[str, Any] = {"step": step, "out_dir": str(out), "checkpoint": str(last_ckpt) if last_ckpt else None}
    if is_main:
        result["eval"] = _run_eval(model, val_ds, cfg, device, step, eval_csv, final=True)
        files = {"predictor": out / "predictor.safetensors", "world_model": out / "world_model.safetensors"}
        if nothing_to_do and all(f.is_file() for f in files.values()):  # exported when that step was reached
            result["files"] = {k: str(v) for k, v in files.items()}
        else:
            result["files"] = _export(cfg, model, per_source, step)
    if distributed:
        torch.distributed.barrier()
    return result


# ----------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa-fast train-ac",
        description=__doc__.split("\n\n", 1)[0] + """

From recorded episodes in one command: point data.sources at the folders robot/collect.py or
robot/simtools/generate.py wrote (or raw DROID trajectory folders, or .txt lists of them; data.weights weights them)
and data.encoder at the frozen encoder; the latent cache is built when missing or stale and reused when
fresh. Examples:
  vjepa-fast train-ac --config configs/ac_sim_tiny.toml
  vjepa-fast train-ac --preset sim_tiny data.sources='["data/sim_random"]' total_steps=300
  torchrun --nproc-per-node 8 -m vjepa_fast.train.ac --config configs/ac_droid_vitg.toml
Outputs in out_dir: log.csv, curves.png, eval.csv, eval_table.txt, eval.png, checkpoints/step_*/ (DCP,
resumable bit for bit), predictor.safetensors and world_model.safetensors (robot/run_mpc.py --predictor).""",
    )
    add_config_arguments(parser, ACTrainConfig, None)
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (schedule unchanged)")
    parser.add_argument("--no-resume", action="store_true", help="train from scratch even if checkpoints exist")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`vjepa-fast train-ac [--preset NAME] [--config FILE] [KEY=VALUE ...] [--set KEY=VALUE ...]`."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.config is None and args.preset is None:
        parser.error("give --config FILE (e.g. configs/ac_sim_tiny.toml) or --preset NAME")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = config_from_args(args, ACTrainConfig)
        if args.no_resume:
            cfg = dataclasses.replace(cfg, resume=False)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    result = train_ac(cfg, max_steps=args.max_steps)
    if "eval" in result:
        print(result["eval"].table())
        for kind, path in result.get("files", {}).items():
            print(f"{kind}: {path}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
