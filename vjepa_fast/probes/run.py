"""`vjepa-fast probe train|eval`: attentive probes on a frozen encoder (V-JEPA 2's understanding evals).

    vjepa-fast probe train --config configs/probe_synthetic_tiny.toml [KEY=VALUE ...]
    vjepa-fast probe eval  --config configs/probe_ssv2_vitg.toml --checkpoint ssv2-vitg-384-64x2x3.pt
    torchrun --nproc-per-node 8 -m vjepa_fast.cli probe train --config configs/probe_ssv2_vitg.toml

train: the frozen encoder's tokens (on the fly, or cached once with cache_features) feed an AttentiveClassifier
trained with cross-entropy (AdamW, warmup + cosine, bf16 autocast where native, DDP under torchrun), resumable
from DCP checkpoints after every epoch; at the end (and every eval_every epochs) the probe is evaluated on
val_csv with test-time averaging over the spatial views. eval: the same evaluation of a given probe: ours
(probe.safetensors or a checkpoint folder), Meta's released eval checkpoint, or an HF VJEPA2ForVideoClassification.
Outputs in out_dir: log.csv, metrics.json (top-1, top-k, class-mean recall@k, confusion matrix), confusion.png,
probe.safetensors (ours) and probe_meta.pt (Meta's layout: `classifiers[0]`, keys `module.*`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from vjepa_fast.fileio import atomic_write_text
from vjepa_fast.probes.checkpoints import load_probe, meta_probe_state_dict, save_probe
from vjepa_fast.probes.config import ProbeConfig
from vjepa_fast.probes.data import ProbeVideoDataset, encode_views, read_probe_csv
from vjepa_fast.probes.metrics import class_mean_recall_at_k, confusion_matrix, save_confusion_png, topk_accuracy
from vjepa_fast.probes.model import AttentiveClassifier, ProbeHeadConfig, multiview_probs
from vjepa_fast.train.config import add_config_arguments, config_from_args

__all__ = ["train_probe", "evaluate_probe", "main", "lr_at"]

_LOG = logging.getLogger(__name__)


def lr_at(step: int, total: int, warmup: int, cfg: ProbeConfig) -> float:
    """Linear warmup start_lr -> lr over `warmup` steps, then cosine decay to final_lr at `total`."""
    if step < warmup:
        return cfg.start_lr + (cfg.lr - cfg.start_lr) * step / max(warmup, 1)
    t = (step - warmup) / max(total - warmup, 1)
    return cfg.final_lr + 0.5 * (cfg.lr - cfg.final_lr) * (1 + math.cos(math.pi * min(t, 1.0)))


class _Run:
    """What train and eval share: process group, device, encoder, datasets (cached or decoded), token access."""

    def __init__(self, cfg: ProbeConfig, *, need_train: bool) -> None:
        from vjepa_fast.diagnostics import encoder_from_spec
        from vjepa_fast.precision import amp_dtype

        self.cfg = cfg
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.device == "auto":
            self.device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        self.distributed = self.world > 1
        if self.distributed and not torch.distributed.is_initialized():
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        self.out = Path(cfg.out_dir)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        d = cfg.data
        if not cfg.encoder:
            raise ValueError("encoder is empty: name the frozen encoder (a .safetensors file, Meta's .pt, or "
                             "random:PRESET, e.g. random:tiny)")
        if not d.val_csv or (need_train and not d.train_csv):
            raise ValueError("data.val_csv" + (" and data.train_csv" if need_train else "") + " must be set "
                             "(CSV files with a `path,label` header; see `vjepa-fast probe train --help`)")
        self.val_rows = read_probe_csv(d.val_csv, d.task, d.class_names)
        self.train_rows = read_probe_csv(d.train_csv, d.task, d.class_names) if need_train else []
        seen = max(s.label for s in self.train_rows + self.val_rows) + 1
        self.num_classes = d.num_classes or (len(d.class_names) if d.class_names else seen)
        if seen > self.num_classes:
            raise ValueError(f"a label {seen - 1} >= data.num_classes {self.num_classes}")
        try:
            _, enc = encoder_from_spec(f"encoder={cfg.encoder}")
        except ValueError as exc:
            raise ValueError(f"encoder {cfg.encoder!r}: {exc}") from exc
        self.encoder = enc.eval().requires_grad_(False).to(self.device)
        self.amp = amp_dtype(cfg.amp, self.device, what="probe autocast")
        kw = dict(task=d.task, frames_per_clip=d.frames_per_clip, frame_step=d.frame_step, fps=d.fps,
                  anticipation_s=d.anticipation_s, num_segments=d.num_segments, num_views=d.num_views,
                  crop_size=d.crop_size, seed=cfg.seed)
        self.val_videos = ProbeVideoDataset(self.val_rows, train=False, **kw)
        self.train_videos = ProbeVideoDataset(self.train_rows, train=True, **kw)
        self.val_cache = self.train_cache = None
        if cfg.cache_features:
            from vjepa_fast.probes.features import ensure_feature_cache

            common = dict(encoder_spec=cfg.encoder, device=self.device, amp_dtype=self.amp, dtype=cfg.cache_dtype,
                          rank=self.rank, world=self.world, batch_size=cfg.batch_size,
                          num_workers=d.num_workers, progress=cfg.progress)
            if need_train:
                self.train_cache = ensure_feature_cache(Path(cfg.features_dir) / "train",
                                                        ProbeVideoDataset(self.train_rows, train=False, **kw),
                                                        self.encoder, **common)
            self.val_cache = ensure_feature_cache(Path(cfg.features_dir) / "val", self.val_videos, self.encoder,
                                                  **common)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp) if self.amp is not None else nullcontext()

    def batches(self, split: str, indices: list[int], epoch: int = 0):
        """Yields (tokens [B, V, S*N, D] on the device, labels [B]) for `indices` (train: one random view)."""
        cfg = self.cfg
        cache = self.train_cache if split == "train" else self.val_cache
        if cache is not None:
            g = torch.Generator().manual_seed(cfg.seed * 7919 + epoch)
            for i in range(0, len(indices), cfg.batch_size):
                items = [cache[j] for j in indices[i : i + cfg.batch_size]]
                tokens = torch.stack([it["tokens"] for it in items])  # [B, V, SN, D]
                if split == "train" and tokens.shape[1] > 1:
                    pick = torch.randint(0, tokens.shape[1], (tokens.shape[0],), generator=g)
                    tokens = tokens[torch.arange(tokens.shape[0]), pick].unsqueeze(1)
                labels = torch.tensor([it["label"] for it in items])
                yield tokens.to(self.device), labels.to(self.device)
            return
        videos = self.train_videos if split == "train" else self.val_videos
        videos.set_epoch(epoch)
        loader = DataLoader(torch.utils.data.Subset(videos, indices), batch_size=cfg.batch_size,
                            num_workers=cfg.data.num_workers, pin_memory=self.device.type == "cuda")
        for batch in loader:
            tokens = encode_views(self.encoder, batch["frames"], device=self.device, amp_dtype=self.amp)
            yield tokens, batch["label"].to(self.device)

    def new_probe(self) -> AttentiveClassifier:
        torch.manual_seed(self.cfg.seed)
        head = ProbeHeadConfig(embed_dim=self.encoder.embed_dim, num_classes=self.num_classes,
                               num_heads=self.cfg.num_heads, depth=self.cfg.depth)
        return AttentiveClassifier(head).to(self.device)


@torch.no_grad()
def _evaluate(run: _Run, probe: nn.Module, tag: str) -> dict[str, Any]:
    """Multi-view evaluation on val_csv (every rank a slice, gathered); rank 0 writes metrics + confusion PNG."""
    cfg = run.cfg
    probe.eval()
    mine = list(range(run.rank, len(run.val_rows), run.world))
    probs, labels, index = [], [], []
    for tokens, y in run.batches("val", mine):
        with run.autocast():
            probs.append(multiview_probs(probe, tokens).float())
        labels.append(y)
    index = torch.tensor(mine, device=run.device)
    p = torch.cat(probs) if probs else torch.zeros(0, run.num_classes, device=run.device)
    y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=run.device)
    if run.distributed:
        # Pad every rank's slice to the longest (slices differ by at most one) so all_gather sees equal shapes.
        n = (len(run.val_rows) + run.world - 1) // run.world
        pad = n - len(mine)
        p = torch.cat([p, p.new_zeros(pad, p.shape[1])])
        y = torch.cat([y, y.new_full((pad,), -1)])
        index = torch.cat([index, index.new_full((pad,), -1)])
        gp, gy, gi = ([torch.empty_like(t) for _ in range(run.world)] for t in (p, y, index))
        torch.distributed.all_gather(gp, p)
        torch.distributed.all_gather(gy, y)
        torch.distributed.all_gather(gi, index)
        p, y, index = torch.cat(gp), torch.cat(gy), torch.cat(gi)
        keep = index >= 0
        p, y, index = p[keep], y[keep], index[keep]
    p, y = p.cpu(), y.cpu()
    k = cfg.recall_k
    cm = confusion_matrix(p.argmax(1), y, run.num_classes)
    metrics = {"tag": tag, "videos": len(y), "classes": run.num_classes, "task": cfg.data.task,
               "views": cfg.data.num_views, "segments": cfg.data.num_segments, "top1": topk_accuracy(p, y, 1),
               f"top{k}": topk_accuracy(p, y, k), f"class_mean_recall@{k}": class_mean_recall_at_k(p, y, k),
               "chance_top1": float(cm.sum(1).max() / max(cm.sum(), 1)), "confusion": cm.tolist()}
    if run.is_main:
        atomic_write_text(run.out / "metrics.json", json.dumps(metrics, indent=1))
        names = cfg.data.class_names or None
        save_confusion_png(cm, run.out / "confusion.png", names,
                           title=f"{tag}: top-1 {100 * metrics['top1']:.1f}% ({len(y)} videos)")
    return metrics


def _split_indices(n: int, batch: int, world: int, rank: int, seed: int, epoch: int) -> list[int]:
    """This rank's training indices of an epoch: a permutation seeded by (seed, epoch), cut to whole global
    batches when there is at least one (so every rank takes the same number of steps), sliced by rank."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    glob = batch * world
    if n >= glob:
        perm = perm[: n // glob * glob]
    else:
        perm = (perm * world)[:glob]  # fewer videos than one global batch: ranks repeat videos
    return [perm[j] for j in range(len(perm)) if (j // batch) % world == rank]


def train_probe(cfg: ProbeConfig, *, max_epochs: int | None = None) -> dict[str, Any]:
    """Train (or resume) a probe; returns {"epoch", "metrics", "files", "out_dir"}. max_epochs: stop after this many
    epochs in total (the schedule still follows cfg.epochs)."""
    from vjepa_fast.train.checkpointing import CheckpointManager
    from vjepa_fast.train.distributed import DistContext
    from vjepa_fast.train.optim import param_groups

    run = _Run(cfg, need_train=True)
    if run.is_main:
        atomic_write_text(run.out / "config.json", json.dumps(cfg.to_dict(), indent=1))
    probe = run.new_probe()
    opt = torch.optim.AdamW(param_groups(probe, cfg.weight_decay), lr=cfg.start_lr)
    ctx = DistContext(rank=run.rank, world_size=run.world, local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                      device=run.device, mode="ddp" if run.distributed else "none")
    ckpt = CheckpointManager(run.out / "checkpoints", ctx, keep_last=cfg.keep_checkpoints)
    epoch = 0
    latest = ckpt.latest() if cfg.resume else None
    if latest is not None:
        meta = ckpt.load_state(latest, {"probe": probe}, opt, trained="probe")
        epoch = int(meta["epoch"])
        _LOG.info("resumed from %s (epoch %d)", latest, epoch)
    train_model: nn.Module = probe
    if run.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            probe, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    n = len(run.train_rows)
    steps_per_epoch = len(_split_indices(n, cfg.batch_size, run.world, run.rank, cfg.seed, 0))
    steps_per_epoch = (steps_per_epoch + cfg.batch_size - 1) // cfg.batch_size
    total, warmup = cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)
    end = cfg.epochs if max_epochs is None else min(cfg.epochs, max_epochs)
    log_csv = run.out / "log.csv"
    if run.is_main and not log_csv.exists():
        log_csv.write_text("epoch,step,lr,loss,train_top1,val_top1,seconds\n")
    bar = None
    if run.is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=end * steps_per_epoch, initial=epoch * steps_per_epoch, desc="probe train", unit="step",
                   dynamic_ncols=True)
    metrics: dict[str, Any] = {}
    t0 = time.perf_counter()
    while epoch < end:
        probe.train()
        idx = _split_indices(n, cfg.batch_size, run.world, run.rank, cfg.seed, epoch)
        stats = torch.zeros(3, dtype=torch.float64, device=run.device)  # loss sum, correct, count
        for b, (tokens, y) in enumerate(run.batches("train", idx, epoch)):
            step = epoch * steps_per_epoch + b
            lr = lr_at(step, total, warmup, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            with run.autocast():
                logits = train_model(tokens[:, 0])
                loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            stats += torch.stack([loss.detach().double() * len(y), (logits.argmax(1) == y).sum().double(),
                                  torch.tensor(float(len(y)), dtype=torch.float64, device=run.device)])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.1e}")
        if run.distributed:
            torch.distributed.all_reduce(stats)
        epoch += 1
        val_top1 = float("nan")
        if (cfg.eval_every and epoch % cfg.eval_every == 0) or epoch == end:
            metrics = _evaluate(run, probe, f"epoch {epoch}")
            val_top1 = metrics["top1"]
        loss_m, acc = (stats[0] / stats[2]).item(), (stats[1] / stats[2]).item()
        if run.is_main:
            with open(log_csv, "a") as f:
                f.write(f"{epoch},{epoch * steps_per_epoch},{lr:.6g},{loss_m:.6f},{acc:.4f},{val_top1:.4f},"
                        f"{time.perf_counter() - t0:.2f}\n")
        ckpt.save_state(epoch, {"probe": probe}, opt, {"epoch": epoch, "world_size": run.world,
                                                        "config": cfg.to_dict(), "probe": probe.config.to_dict()},
                        trained="probe")
    if bar is not None:
        bar.close()
    if not metrics:  # resumed a finished run: evaluate what it holds
        metrics = _evaluate(run, probe, f"epoch {epoch}")
    files: dict[str, str] = {}
    if run.is_main:
        info = {"encoder": cfg.encoder, "epochs": epoch, "class_names": list(cfg.data.class_names),
                "top1": metrics["top1"], "task": cfg.data.task}
        files["probe"] = str(save_probe(run.out / "probe.safetensors", probe, info=info))
        tmp = run.out / f".probe_meta.pt.tmp-{os.getpid()}"
        torch.save(meta_probe_state_dict(probe), tmp)
        os.replace(tmp, run.out / "probe_meta.pt")
        files["probe_meta"] = str(run.out / "probe_meta.pt")
    if run.distributed:
        torch.distributed.barrier()
    return {"epoch": epoch, "metrics": metrics, "files": files, "out_dir": str(run.out)}


def evaluate_probe(cfg: ProbeConfig, checkpoint: str, *, num_heads: int | None = None) -> dict[str, Any]:
    """Evaluate a probe checkpoint (ours: probe.safetensors or a checkpoints/step_* folder; Meta's eval .pt; an
    HF head) on cfg.data.val_csv; returns the metrics (also written to out_dir/metrics.json + confusion.png)."""
    run = _Run(cfg, need_train=False)
    path = Path(checkpoint)
    if path.is_dir() and (path / "meta.json").is_file():  # one of our DCP training checkpoints
        from vjepa_fast.train.checkpointing import load_module_state

        probe = run.new_probe()
        load_module_state(path, probe, key="probe")
    else:
        probe, _ = load_probe(path, num_heads=num_heads if num_heads is not None else cfg.num_heads)
    if probe.config.embed_dim != run.encoder.embed_dim:
        raise ValueError(f"probe {checkpoint} reads width {probe.config.embed_dim}, the encoder {cfg.encoder} "
                         f"gives {run.encoder.embed_dim}")
    if probe.config.num_classes < run.num_classes:
        raise ValueError(f"probe {checkpoint} has {probe.config.num_classes} classes, the CSV labels need "
                         f"{run.num_classes}")
    run.num_classes = probe.config.num_classes
    metrics = _evaluate(run, probe.to(run.device), f"eval {path.name}")
    return metrics


# ------------------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vjepa-fast probe", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("Outputs", 1)[0].rstrip())
    sub = parser.add_subparsers(dest="action", required=True, metavar="train|eval")
    epilog = """CSV files (header required; relative paths from the CSV's folder):
  classification: path,label                   (label: class index, or a name listed in data.class_names)
  anticipation:   path,action_start_s,label    (the clip ends data.anticipation_s before action_start_s)
Metrics: top-1, top-k (k = recall_k) over videos, and class-mean recall@k (the mean over classes of the share
of each class's videos whose label is in the top k: EPIC-KITCHENS-100's anticipation metric)."""
    for action, text in (("train", "train a probe on data.train_csv, evaluate on data.val_csv"),
                         ("eval", "evaluate a probe checkpoint on data.val_csv")):
        p = sub.add_parser(action, help=text, description=text + ".", epilog=epilog)
        add_config_arguments(p, ProbeConfig, None)
        if action == "train":
            p.add_argument("--max-epochs", type=int, default=None,
                           help="stop after this many epochs in total (schedule unchanged)")
            p.add_argument("--no-resume", action="store_true", help="train from scratch even if checkpoints exist")
        else:
            p.add_argument("--checkpoint", required=True,
                           help="probe.safetensors (ours), a checkpoints/step_* folder, Meta's eval .pt "
                                "(classifiers[0]) or an HF VJEPA2ForVideoClassification folder / file")
            p.add_argument("--num-heads", type=int, default=None,
                           help="heads of a Meta / HF probe (not stored in Meta's files; default: num_heads)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`vjepa-fast probe train|eval [--preset NAME] [--config FILE] [KEY=VALUE ...]`."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.config is None and args.preset is None:
        parser.error("give --config FILE (e.g. configs/probe_synthetic_tiny.toml) or --preset NAME")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        cfg = config_from_args(args, ProbeConfig)
        if getattr(args, "no_resume", False):
            cfg = dataclasses.replace(cfg, resume=False)
        if args.action == "train":
            result = train_probe(cfg, max_epochs=args.max_epochs)
            metrics = result["metrics"]
        else:
            metrics = evaluate_probe(cfg, args.checkpoint, num_heads=args.num_heads)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        parser.error(str(exc))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    k = cfg.recall_k
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun: one summary, from rank 0
        return 0
    print(f"{metrics['tag']}: top-1 {100 * metrics['top1']:.2f}%  top-{k} {100 * metrics[f'top{k}']:.2f}%  "
          f"class-mean recall@{k} {100 * metrics[f'class_mean_recall@{k}']:.2f}%  ({metrics['videos']} videos, "
          f"{metrics['classes']} classes); {cfg.out_dir}/metrics.json, confusion.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
