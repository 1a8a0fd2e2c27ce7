"""Probe metrics: top-k accuracy, class-mean recall@k (EPIC-KITCHENS-100 anticipation), confusion matrix + PNG,
and a linear-probe accuracy on frozen features (a quick check that an encoder's features carry a known factor)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["topk_accuracy", "class_mean_recall_at_k", "confusion_matrix", "save_confusion_png",
           "linear_probe_accuracy"]


def _check(scores: torch.Tensor, labels: torch.Tensor) -> None:
    if scores.dim() != 2 or labels.dim() != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(f"scores must be [N, C] and labels [N], got {tuple(scores.shape)} and {tuple(labels.shape)}")


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores. scores [N, C], labels [N]."""
    _check(scores, labels)
    k = min(k, scores.shape[1])
    top = scores.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(1).float().mean()) if len(labels) else float("nan")


def class_mean_recall_at_k(scores: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """EPIC-KITCHENS-100's anticipation metric: for each class present in `labels`, the fraction of its samples
    whose label is in the top-k scores; the mean over those classes (classes absent from the set are skipped)."""
    _check(scores, labels)
    k = min(k, scores.shape[1])
    hit = (scores.topk(k, dim=1).indices == labels[:, None]).any(1).float()
    classes = labels.unique()
    return float(torch.stack([hit[labels == c].mean() for c in classes]).mean()) if len(classes) else float("nan")


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 [C, C]: row = true class, column = predicted class."""
    idx = labels.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def save_confusion_png(cm: torch.Tensor, path: str | os.PathLike, class_names: Sequence[str] | None = None,
                       title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (matplotlib Agg); written to a temporary name and renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = cm.shape[0]
    norm = cm.double() / cm.sum(1, keepdim=True).clamp(min=1)
    side = min(12.0, 2.5 + 0.35 * c)
    fig, ax = plt.subplots(figsize=(side, side))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    if c <= 40:
        names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
        ax.set_xticks(range(c), names, rotation=90, fontsize=8)
        ax.set_yticks(range(c), names, fontsize=8)
        if c <= 12:
            for i in range(c):
                for j in range(c):
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def linear_probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                          *, weight_decay: float = 1e-3, steps: int = 300, seed: int = 0) -> float:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS); test accuracy."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    g = torch.Generator().manual_seed(seed)
    w = (0.01 * torch.randn(xs.shape[1], classes, generator=g)).requires_grad_(True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w + b, train_y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((xt @ w + b).argmax(1) == test_y).float().mean())
