"""Training logs: CSV (always), TensorBoard (when installed) and a PNG of the curves."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

_LOG = logging.getLogger(__name__)


class MetricsLogger:
    """Appends one row per logged step to `metrics.csv`; resumed runs append to the same file."""

    def __init__(self, directory: str | Path, fields: Sequence[str], *, tensorboard: bool = True,
                 enabled: bool = True) -> None:
        self.enabled = enabled
        self.dir = Path(directory)
        self.fields = ["step", *fields]
        self.path = self.dir / "metrics.csv"
        self._tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields, extrasaction="ignore")
        if new:
            self._writer.writeheader()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:
                _LOG.info("tensorboard is not installed: logging to CSV only")

    def truncate_after(self, step: int) -> None:
        """Drops rows after `step` (a resumed run re-logs the steps it repeats)."""
        if not self.enabled or not self.path.is_file():
            return
        self._file.close()
        with open(self.path, newline="") as f:
            # A row cut short by a kill has missing fields: drop it with the rows after the checkpoint.
            rows = [r for r in csv.DictReader(f)
                    if None not in r.values() and "" not in r.values() and int(r["step"]) <= step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields, extrasaction="ignore")

    def log(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        self._writer.writerow({"step": step, **values})
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> dict[str, list[float]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k, []).append(float("nan"))
    return out


def plot_metrics(csv_path: str | Path, png_path: str | Path, keys: Sequence[str], title: str = "") -> Path:
    """One panel per key against the step, written to `png_path` (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_metrics(csv_path)
    keys = [k for k in keys if k in data]
    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.4 * max(1, len(keys))), sharex=True, squeeze=False)
    for ax, k in zip(axes[:, 0], keys):
        ax.plot(data["step"], data[k], lw=1.2)
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(png_path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png_path)
    return png_path
