"""Diagnostics of a world model for latent MPC, each a table (text / JSON) and a PNG.

(a) `energy_quality`: does the planner's energy rank how far the arm is from the goal? Spearman rank
    correlation between the latent L1 distance of two frames (exactly the planner's energy: mean |z_a - z_b|
    over tokens and channels of layer-normed latents) and the distance between their end-effector positions,
    over all pairs of held-out frames (and over the pairs closer than `near`, what the planner sees in the
    last steps). The PNG bins the pairs by end-effector distance and draws the median and quartiles of the
    latent distance: a useful energy rises monotonically from 0.
(c) `predictor_vs_copy`: held-out k-step L1 of the AC predictor (teacher forcing and rollout) against the
    "copy the latent" baselines at k = 1, 2, 4 (`train.ac.evaluate_ac`).
(b) The perfect-dynamics ceiling needs the simulator and lives in `robot/simtools/ceiling.py` (`vjepa-fast energy-ceiling`):
    the same CEM planner with the simulator itself as the model and this latent energy.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

__all__ = ["EnergyQuality", "action_inference", "encoder_from_spec", "energy_quality", "position_probe", "episode_latents", "latent_l1_matrix", "layer_norm_latents", "plot_energy_quality",
           "write_energy_report"]


@dataclass
class EnergyQuality:
    """Result of `energy_quality` (one encoder on one set of frames)."""

    name: str
    spearman_all: float
    spearman_near: float
    near_m: float
    pairs: int
    frames: int
    # binned curve for the plot: bin centres (m), latent L1 quartiles per bin
    bins_m: list[float]
    q25: list[float]
    median: list[float]
    q75: list[float]
    # linear probe: held-out RMSE (m) of the end-effector xyz read linearly from the latents (`position_probe`)
    probe_rmse_m: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self) -> str:
        return (f"| {self.name} | {self.spearman_all:.3f} | {self.spearman_near:.3f} | "
                f"{100 * self.probe_rmse_m:.2f} | {self.frames} | {self.pairs} |")


def encoder_from_spec(item: str) -> tuple[str, torch.nn.Module]:
    """(name, frozen encoder) from NAME=FILE (.safetensors: its encoder; Meta .pt: its encoder) or
    NAME=random:PRESET[@IMG] (an `EncoderConfig` preset with random weights, seed 0, optionally at IMG px)."""
    from vjepa_fast.models import EncoderConfig, VideoEncoder

    name, _, spec = item.partition("=")
    if not name or not spec:
        raise ValueError("expected NAME=FILE.safetensors or NAME=random:PRESET[@IMG]")
    if spec.startswith("random:"):
        preset, _, img = spec[len("random:"):].partition("@")
        if not hasattr(EncoderConfig, preset):
            raise ValueError(f"unknown EncoderConfig preset {preset!r} (e.g. tiny)")
        torch.manual_seed(0)
        cfg = getattr(EncoderConfig, preset)(**({"img_size": int(img)} if img else {}))
        return name, VideoEncoder(cfg).eval()
    from vjepa_fast.checkpoints import load_official, load_safetensors

    if not Path(spec).is_file():
        raise ValueError(f"{spec} does not exist")
    loaded = load_safetensors(spec) if spec.endswith(".safetensors") else load_official(spec)
    if loaded.encoder is None:
        raise ValueError(f"{spec} holds no encoder")
    return name, loaded.encoder.eval()


def _spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x.numpy(), y.numpy()).statistic)


def latent_l1_matrix(z: torch.Tensor) -> torch.Tensor:
    """z: [F, N, D] layer-normed latents -> [F, F] mean |z_i - z_j| over N and D (the planner's energy)."""
    flat = z.flatten(1).float()
    return torch.cdist(flat, flat, p=1) / flat.shape[1]


@torch.no_grad()
def position_probe(latents: torch.Tensor, xyz: torch.Tensor, *, seed: int = 0, ridge: float = 1.0) -> float:
    """Held-out RMSE (m, over the 3 axes) of a ridge regression from the flattened latents [F, N*D] to the
    end-effector xyz [F, 3]: fitted on a random half of the frames (seeded), scored on the other half. Whether the
    arm's position can be read from the features at all (a random encoder's can, partly: the pixels carry it);
    the mean position alone scores the positions' own spread."""
    if len(latents) < 8:
        raise ValueError(f"need at least 8 frames for the probe, got {len(latents)}")
    perm = torch.randperm(len(latents), generator=torch.Generator().manual_seed(seed + 1))
    tr, te = perm[: len(perm) // 2], perm[len(perm) // 2:]
    x = latents.flatten(1).double()
    mu, sd = x[tr].mean(0), x[tr].std(0).clamp_min(1e-6)
    x = (x - mu) / sd
    y = xyz.double()
    ym = y[tr].mean(0)
    # dual form (kernel ridge with a linear kernel): F/2 x F/2 instead of (N*D)^2
    k = x[tr] @ x[tr].T
    alpha = torch.linalg.solve(k + ridge * x.shape[1] ** 0.5 * torch.eye(len(tr), dtype=k.dtype), y[tr] - ym)
    pred = x[te] @ (x[tr].T @ alpha) + ym
    return float((pred - y[te]).pow(2).sum(1).mean().sqrt())


@torch.no_grad()
def energy_quality(latents: torch.Tensor, xyz: torch.Tensor, *, name: str = "encoder", near: float = 0.1,
                   max_frames: int | None = 400, seed: int = 0, bins: int = 12) -> EnergyQuality:
    """Diagnostic (a) on given frames.

    latents: [F, N, D] layer-normed latents of F frames (as the planner encodes them: `WorldModel.encode`);
    xyz: [F, 3] end-effector positions (m) of the same frames. At most `max_frames` frames (random subset,
    seeded) -> F (F - 1) / 2 pairs.
    """
    if latents.dim() != 3 or xyz.dim() != 2 or xyz.shape[1] != 3 or len(latents) != len(xyz):
        raise ValueError(f"latents must be [F, N, D] and xyz [F, 3] with the same F, got {tuple(latents.shape)} "
                         f"and {tuple(xyz.shape)}")
    if len(latents) < 3:
        raise ValueError(f"need at least 3 frames, got {len(latents)}")
    if max_frames is not None and len(latents) > max_frames:
        keep = torch.randperm(len(latents), generator=torch.Generator().manual_seed(seed))[:max_frames]
        latents, xyz = latents[keep], xyz[keep]
    iu = torch.triu_indices(len(latents), len(latents), 1)
    dz = latent_l1_matrix(latents)[iu[0], iu[1]].double()
    dp = torch.cdist(xyz.double(), xyz.double())[iu[0], iu[1]]
    close = dp < near
    edges = torch.linspace(0, float(dp.max()), bins + 1, dtype=torch.float64)
    centres, q25, med, q75 = [], [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = dz[(dp >= lo) & (dp < hi)]
        if len(sel) >= 5:
            q = torch.quantile(sel, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
            centres.append(float((lo + hi) / 2))
            q25.append(float(q[0]))
            med.append(float(q[1]))
            q75.append(float(q[2]))
    return EnergyQuality(name=name, spearman_all=_spearman(dz, dp),
                         spearman_near=_spearman(dz[close], dp[close]) if int(close.sum()) > 2 else float("nan"),
                         near_m=near, pairs=len(dz), frames=len(latents), bins_m=centres, q25=q25, median=med,
                         q75=q75, probe_rmse_m=position_probe(latents, xyz, seed=seed) if len(latents) >= 8
                         else float("nan"))


def plot_energy_quality(results: Sequence[EnergyQuality], path: str | Path, title: str = "") -> Path:
    """Latent L1 (median and quartiles) against end-effector distance, one line per result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        line, = ax.plot([100 * b for b in r.bins_m], r.median, "o-",
                        label=f"{r.name} (Spearman {r.spearman_all:.2f}; <{100 * r.near_m:.0f} cm {r.spearman_near:.2f})")
        ax.fill_between([100 * b for b in r.bins_m], r.q25, r.q75, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("end-effector distance between the two frames (cm)")
    ax.set_ylabel("latent L1 (planner energy)")
    ax.set_title(title or "energy quality: latent distance vs end-effector distance")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_energy_report(results: Sequence[EnergyQuality], out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """energy_quality.md (a table), energy_quality.json and energy_quality.png in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = ["| encoder / camera | Spearman (all pairs) | Spearman (pairs < "
            f"{100 * results[0].near_m:.0f} cm) | xyz probe RMSE (cm) | frames | pairs |", "|---|---|---|---|---|---|"]
    rows += [r.row() for r in results]
    (out / "energy_quality.md").write_text("\n".join(rows) + "\n")
    (out / "energy_quality.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    png = plot_energy_quality(results, out / "energy_quality.png", title)
    return {"table": out / "energy_quality.md", "json": out / "energy_quality.json", "png": png}


def layer_norm_latents(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The planner's normalisation of encoder outputs: layer norm without affine over the channels."""
    return F.layer_norm(z.float(), (z.shape[-1],), eps=eps)


@torch.no_grad()
def _object_tracks(path: str | Path, name: str) -> torch.Tensor:
    """[T, 3] positions of object `name` per frame, as robot/simtools/generate_physics.py records them in meta.json."""
    import json

    extra = json.loads((Path(path) / "meta.json").read_text()).get("extra", {})
    tracks = extra.get("objects_xyz") or {}
    if name not in tracks:
        raise ValueError(f"{path}: no per-frame positions of {name!r} (meta extra.objects_xyz has "
                         f"{sorted(tracks) or 'nothing'}; robot/simtools/generate_physics.py records them)")
    return torch.tensor(tracks[name], dtype=torch.float64)


def episode_latents(encoder: torch.nn.Module, episodes: Sequence[str | Path], *, max_frames: int | None = 400,
                    seed: int = 0, batch_size: int = 32, target: str = "ee") -> tuple[torch.Tensor, torch.Tensor]:
    """(latents [F, N, D], xyz [F, 3]) of frames of recorded episodes, encoded exactly as the planner does
    (`WorldModel.encode`: eval preprocessing at the encoder's size, each frame a 2-frame clip, layer norm).
    At most `max_frames` frames, drawn uniformly (seeded) over all frames of all episodes. xyz: the end
    effector's (target "ee") or an object's (its name: per-frame positions in the episode's meta.json)."""
    from vjepa_fast.data.episode_format import read_episode
    from vjepa_fast.data.transforms import preprocess_frames

    if not episodes:
        raise ValueError("no episodes given")
    eps = [read_episode(p) for p in episodes]
    where = [ep.states[:, :3].double() if target == "ee" else _object_tracks(p, target)
             for p, ep in zip(episodes, eps)]
    index = [(e, t) for e, ep in enumerate(eps) for t in range(ep.num_frames)]
    if max_frames is not None and len(index) > max_frames:
        keep = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))[:max_frames].sort().values
        index = [index[int(i)] for i in keep]
    size = encoder.config.img_size if isinstance(encoder.config.img_size, int) else int(encoder.config.img_size[0])
    zs, xyz = [], []
    for start in range(0, len(index), batch_size):
        chunk = index[start:start + batch_size]
        frames = torch.cat([eps[e].frames([t]) for e, t in chunk])  # [b, H, W, 3] uint8
        images = preprocess_frames(frames, size).permute(1, 0, 2, 3)  # [b, 3, s, s]
        z = encoder(images.float())  # a 4-D image batch: each image a 2-frame clip, as WorldModel.encode
        zs.append(layer_norm_latents(z))
        xyz.append(torch.stack([where[e][t] for e, t in chunk]))
    return torch.cat(zs), torch.cat(xyz)


@torch.no_grad()
def action_inference(predictor: torch.nn.Module, dataset: Any, step: float = 0.025,
                     max_transitions: int | None = 600) -> dict[str, float]:
    """What the planner needs from the predictor: for each held-out transition (z_t, z_t+1), the xyz action on
    a 5x5x5 grid (+-2 * step) whose one-step prediction is closest (L1) to z_t+1, compared with the true
    action. Returns the per-axis sign accuracy (over |true| > 0.02 m; chance 0.5) and the mean error (m).

    dataset: CachedClipDataset with frames_per_clip=2 (held-out episodes). max_transitions: at most this many,
    evenly spaced over the dataset (None: all).
    """
    import itertools

    import numpy as np

    from vjepa_fast.constants import TARGET_LN_EPS

    predictor = predictor.eval()
    grid = torch.tensor(list(itertools.product([-2 * step, -step, 0.0, step, 2 * step], repeat=3)))
    hit, cnt, err = torch.zeros(3), torch.zeros(3), []
    n = len(dataset)
    picks = range(n) if max_transitions is None or n <= max_transitions else \
        sorted({int(i) for i in np.linspace(0, n - 1, max_transitions)})
    for i in picks:
        b = dataset[i]
        z0, z1, true = b["latents"][0], b["latents"][1], b["actions"][0]
        a = torch.zeros(len(grid), 1, 7)
        a[:, 0, :3] = grid
        a[:, 0, 3:] = true[3:]  # rotation / gripper as executed (held)
        s = b["states"][:1].expand(len(grid), 1, 7)
        pred = predictor(z0.expand(len(grid), -1, -1), a, s)
        e = (F.layer_norm(pred, (pred.shape[-1],), eps=TARGET_LN_EPS) - z1).abs().mean((1, 2))
        best = grid[e.argmin()]
        mask = true[:3].abs() > 0.02
        hit += ((best.sign() == true[:3].sign()) & mask).float()
        cnt += mask.float()
        err.append(float((best - true[:3]).norm()))
    acc = (hit / cnt.clamp(min=1)).tolist()
    return {"sign_accuracy_x": acc[0], "sign_accuracy_y": acc[1], "sign_accuracy_z": acc[2],
            "mean_error_m": float(np.mean(err)), "transitions": len(err)}
