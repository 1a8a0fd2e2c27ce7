"""Multi-block 3D masking for V-JEPA 2 pretraining (SPEC section 3).

A clip of Tp x Hp x Wp tokens (index ``t*Hp*Wp + h*Wp + w``) gets, per mask config, a set of blocks; the
union of the blocks is the TARGET set (what the predictor must predict) and the rest is the CONTEXT set (what
the context encoder sees).

Block size (shared by the whole batch, drawn once per call and config):
    keep = int(Hp * Wp * spatial_scale)
    ar   ~ U(aspect_ratio[0], aspect_ratio[1])       (uniform by default, see ``MaskConfig``)
    h    = round(sqrt(keep * ar)),  w = round(sqrt(keep / ar)),  both clipped to [1, Hp] / [1, Wp]
    t    = max(1, int(Tp * temporal_scale))           (temporal_scale 1.0: every block spans all of time)
Block positions are drawn per sample and per block. A sample whose blocks happen to cover every token (empty
context) is redrawn, as the reference does. Both index lists are sorted ascending; with
``variable_length=False`` each list is truncated to the shortest one in the batch, keeping the first K
entries (so the kept context tokens are biased towards early indices, which is the reference behaviour).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from vjepa_fast.seeding import derive_seed as _derive_seed

__all__ = [
    "MaskConfig",
    "MaskPair",
    "VarlenMaskPair",
    "MultiBlockMaskGenerator",
    "MaskCollator",
    "default_mask_configs",
    "block_size",
    "pack_varlen",
]

_LOG = logging.getLogger(__name__)

# Redraws allowed for one sample whose blocks cover the whole grid. With the SPEC configs an empty context is
# rare on real grids, so 100 failures in a row only happen on tiny grids (see _sample_target_mask).
_MAX_REDRAWS = 100


@dataclass(frozen=True)
class MaskConfig:
    """One multi-block mask config.

    Attributes:
        num_blocks: blocks drawn per sample; their union is the target set.
        spatial_scale: fraction of the Hp*Wp grid one block covers before rounding, in (0, 1].
        aspect_ratio: (min, max) of the block's h/w ratio, 0 < min <= max.
        temporal_scale: fraction of the Tp time steps one block spans, in (0, 1]; 1.0 = all time steps.
        aspect_ratio_sampling: "uniform" draws ar ~ U(min, max) (what the reference does; SPEC section 3 gives
            only the range); "log_uniform" draws log(ar) ~ U(log min, log max), which is symmetric in h/w.
    """

    num_blocks: int
    spatial_scale: float
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    temporal_scale: float = 1.0
    aspect_ratio_sampling: Literal["uniform", "log_uniform"] = "uniform"

    def __post_init__(self) -> None:
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int):
            raise TypeError(f"num_blocks must be an int, got {type(self.num_blocks).__name__}")
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if not (0.0 < float(self.spatial_scale) <= 1.0):
            raise ValueError(f"spatial_scale must be in (0, 1], got {self.spatial_scale}")
        if not (0.0 < float(self.temporal_scale) <= 1.0):
            raise ValueError(f"temporal_scale must be in (0, 1], got {self.temporal_scale}")
        if len(self.aspect_ratio) != 2:
            raise ValueError(f"aspect_ratio must be a (min, max) pair, got {self.aspect_ratio!r}")
        lo, hi = (float(v) for v in self.aspect_ratio)
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0.0 or lo > hi:
            raise ValueError(f"aspect_ratio must satisfy 0 < min <= max (finite), got {self.aspect_ratio!r}")
        if self.aspect_ratio_sampling not in ("uniform", "log_uniform"):
            raise ValueError(
                f"aspect_ratio_sampling must be 'uniform' or 'log_uniform', got {self.aspect_ratio_sampling!r}"
            )

    @classmethod
    def short_range(cls) -> MaskConfig:
        """SPEC short-range config: 8 blocks of spatial scale 0.15, ar in [0.75, 1.5], all time steps."""
        return cls(num_blocks=8, spatial_scale=0.15)

    @classmethod
    def long_range(cls) -> MaskConfig:
        """SPEC long-range config: 2 blocks of spatial scale 0.7, ar in [0.75, 1.5], all time steps."""
        return cls(num_blocks=2, spatial_scale=0.7)


def default_mask_configs() -> list[MaskConfig]:
    """The two mask configs of V-JEPA 2 pretraining, in the reference order: [short-range, long-range]."""
    return [MaskConfig.short_range(), MaskConfig.long_range()]


class MaskPair(NamedTuple):
    """Batch-truncated masks of one config: ``context``: LongTensor [B, Kc], ``target``: LongTensor [B, Kt]."""

    context: torch.Tensor
    target: torch.Tensor


class VarlenMaskPair(NamedTuple):
    """Full-length masks of one config: lists of B ascending 1-D LongTensors (lengths differ per sample)."""

    context: list[torch.Tensor]
    target: list[torch.Tensor]


def _check_grid(grid: Sequence[int]) -> tuple[int, int, int]:
    if len(grid) != 3:
        raise ValueError(f"grid must be (Tp, Hp, Wp), got {tuple(grid)!r}")
    for v in grid:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"grid entries must be ints, got {tuple(grid)!r}")
        if v < 1:
            raise ValueError(f"grid entries must be >= 1, got {tuple(grid)!r}")
    return int(grid[0]), int(grid[1]), int(grid[2])


def block_size(grid: Sequence[int], config: MaskConfig, aspect_ratio: float) -> tuple[int, int, int]:
    """Block size (t, h, w) in tokens for one aspect ratio, per the SPEC rule.

    keep = int(Hp*Wp*scale); h = round(sqrt(keep*ar)); w = round(sqrt(keep/ar)); clipped to the grid.
    h and w are also kept >= 1: on tiny grids keep can be 0 (e.g. 2x2 at scale 0.15), and an empty block would
    leave an empty target set that no loss can use.
    Python's round() is used (halves to even), like the reference.
    """
    tp, hp, wp = _check_grid(grid)
    keep = int(hp * wp * config.spatial_scale)
    h = min(max(round(math.sqrt(keep * aspect_ratio)), 1), hp)
    w = min(max(round(math.sqrt(keep / aspect_ratio)), 1), wp)
    t = min(max(int(tp * config.temporal_scale), 1), tp)
    return t, h, w


def _first_k_sorted(mask: torch.Tensor, k: int) -> torch.Tensor:
    """mask: bool [B, N] -> LongTensor [B, k], the k smallest indices where mask is True (ascending).

    Sorting a key (index where True, N + index where False) gives the True indices first and in order, for
    the whole batch at once.
    """
    n = mask.shape[1]
    idx = torch.arange(n, dtype=torch.long, device=mask.device).expand_as(mask)
    key = torch.where(mask, idx, idx + n)
    return key.sort(dim=1).values[:, :k].contiguous()


def pack_varlen(indices: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack per-sample index lists for a varlen (cu_seqlens) attention.

    Args:
        indices: B 1-D LongTensors of lengths K_b.
    Returns:
        flat: LongTensor [sum K_b], the lists concatenated; cu_seqlens: int32 [B + 1], cumulative lengths from 0.
    """
    if len(indices) == 0:
        raise ValueError("indices must hold at least one tensor")
    lengths = torch.tensor([int(t.numel()) for t in indices], dtype=torch.int32)
    cu = torch.zeros(len(indices) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(lengths, 0)
    return torch.cat([t.reshape(-1).long() for t in indices]), cu


class MultiBlockMaskGenerator:
    """Draws multi-block context/target masks for a batch of clips.

    Args:
        grid: token grid (Tp, Hp, Wp); e.g. 16 frames at 256 px with tubelet 2, patch 16 -> (8, 16, 16).
        configs: mask configs (default: ``default_mask_configs()``, short-range then long-range).
        variable_length: False (default) -> per config a ``MaskPair`` of LongTensors [B, K] truncated to the
            shortest list in the batch. True -> per config a ``VarlenMaskPair`` of lists of B 1-D LongTensors
            with every sample's full context and target (context and target of a sample then partition the
            grid); use ``pack_varlen`` to get (flat indices, cu_seqlens).
        seed: base seed used by ``for_step`` (and by ``__call__`` when no generator is passed).

    Calls:
        ``gen(batch_size, generator=None)`` draws from ``generator`` (or from an internal generator seeded with
        ``seed``, which then advances across calls).
        ``gen.for_step(batch_size, step, rank=0)`` is stateless: the same (seed, step, rank) always gives the
        same masks, whatever the number of DataLoader workers and after a resume.
    """

    def __init__(
        self,
        grid: Sequence[int],
        configs: Sequence[MaskConfig] | None = None,
        *,
        variable_length: bool = False,
        seed: int = 0,
    ) -> None:
        self.grid = _check_grid(grid)
        configs = default_mask_configs() if configs is None else list(configs)
        if len(configs) == 0:
            raise ValueError("configs must hold at least one MaskConfig")
        for c in configs:
            if not isinstance(c, MaskConfig):
                raise TypeError(f"configs must hold MaskConfig objects, got {type(c).__name__}")
        self.configs: list[MaskConfig] = configs
        self.variable_length = bool(variable_length)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    @property
    def num_tokens(self) -> int:
        tp, hp, wp = self.grid
        return tp * hp * wp

    def for_step(self, batch_size: int, step: int, rank: int = 0) -> list[MaskPair] | list[VarlenMaskPair]:
        """Masks for training step ``step`` on rank ``rank``; a pure function of (seed, step, rank)."""
        g = torch.Generator().manual_seed(_derive_seed(self.seed, step, rank))
        return self(batch_size, generator=g)

    def __call__(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> list[MaskPair] | list[VarlenMaskPair]:
        """Draw masks for ``batch_size`` clips.

        Returns:
            one entry per config, in ``configs`` order: ``MaskPair(context [B, Kc], target [B, Kt])`` (int64,
            ascending rows) or, with ``variable_length=True``, ``VarlenMaskPair`` of per-sample 1-D tensors.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        g = self._generator if generator is None else generator
        out: list[Any] = []
        for cfg in self.configs:
            target = self._sample_target_mask(batch_size, cfg, g)  # bool [B, N]
            context = ~target
            if self.variable_length:
                idx = torch.arange(self.num_tokens, dtype=torch.long)
                out.append(VarlenMaskPair([idx[c] for c in context], [idx[t] for t in target]))
            else:
                kc = int(context.sum(1).min())
                kt = int(target.sum(1).min())
                out.append(MaskPair(_first_k_sorted(context, kc), _first_k_sorted(target, kt)))
        return out

    def _draw_aspect_ratio(self, cfg: MaskConfig, g: torch.Generator) -> float:
        u = float(torch.rand((), generator=g))
        lo, hi = cfg.aspect_ratio
        if cfg.aspect_ratio_sampling == "log_uniform":
            return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return lo + u * (hi - lo)

    def _sample_target_mask(self, batch_size: int, cfg: MaskConfig, g: torch.Generator) -> torch.Tensor:
        """bool [B, N]: union of cfg.num_blocks blocks per sample, redrawing samples with an empty context.

        On tiny grids (e.g. 8 blocks on a 1x2 grid) a context may almost never survive; after _MAX_REDRAWS
        failed draws a sample keeps the longest prefix of its blocks whose union leaves a context, so such grids
        still work (with fewer blocks). Only a single block covering the whole grid is an error.
        """
        t, h, w = block_size(self.grid, cfg, self._draw_aspect_ratio(cfg, g))
        tp, hp, wp = self.grid
        if t == tp and h == hp and w == wp:
            raise ValueError(
                f"mask config {cfg} leaves no context token on grid {self.grid}: one {t}x{h}x{w} block covers "
                "it all; lower spatial_scale or use a larger grid"
            )
        blocks = self._draw_blocks(batch_size, cfg.num_blocks, (t, h, w), g)  # [B, nb, N]
        target = blocks.any(dim=1)
        for _ in range(_MAX_REDRAWS):
            full = target.all(dim=1)
            n_full = int(full.sum())
            if n_full == 0:
                return target
            blocks[full] = self._draw_blocks(n_full, cfg.num_blocks, (t, h, w), g)
            target[full] = blocks[full].any(dim=1)
        full = target.all(dim=1)
        _LOG.warning(
            "mask config %s: %d sample(s) on grid %s kept covering every token after %d redraws; using fewer "
            "blocks for them",
            cfg,
            int(full.sum()),
            self.grid,
            _MAX_REDRAWS,
        )
        prefix = blocks[full].to(torch.uint8).cummax(dim=1).values.bool()  # [n, nb, N]: union of blocks[:k+1]
        leaves_context = ~prefix.all(dim=2)  # [n, nb]; True for k=0 since one block never covers the grid
        last_ok = leaves_context.long().cumprod(dim=1).sum(dim=1) - 1  # largest k whose union leaves a context
        target[full] = prefix[torch.arange(prefix.shape[0]), last_ok]
        return target

    def _draw_blocks(self, n: int, num_blocks: int, size: tuple[int, int, int], g: torch.Generator) -> torch.Tensor:
        """bool [n, num_blocks, Tp*Hp*Wp]: num_blocks blocks of `size` at uniform random positions per sample."""
        tp, hp, wp = self.grid
        t, h, w = size
        # One integer draw per (sample, block, axis): start in [0, dim - size].
        t0 = torch.randint(0, tp - t + 1, (n, num_blocks, 1), generator=g)
        h0 = torch.randint(0, hp - h + 1, (n, num_blocks, 1), generator=g)
        w0 = torch.randint(0, wp - w + 1, (n, num_blocks, 1), generator=g)
        at, ah, aw = torch.arange(tp), torch.arange(hp), torch.arange(wp)
        in_t = (at >= t0) & (at < t0 + t)  # [n, nb, Tp]
        in_h = (ah >= h0) & (ah < h0 + h)  # [n, nb, Hp]
        in_w = (aw >= w0) & (aw < w0 + w)  # [n, nb, Wp]
        blocks = in_t[:, :, :, None, None] & in_h[:, :, None, :, None] & in_w[:, :, None, None, :]
        return blocks.reshape(n, num_blocks, tp * hp * wp)


class MaskCollator:
    """DataLoader ``collate_fn`` that collates samples and attaches masks.

    The masks of a batch are seeded from (generator seed, epoch, draw) of the batch's first sample when the
    samples are dicts carrying integer ``"epoch"`` and ``"draw"`` entries (as ``vjepa_fast.data.video`` samples
    do). Such masks are identical for any number of workers and after a resume. Samples without those keys
    fall back to a per-collator counter, which is NOT worker-safe (each worker has its own copy and would repeat
    the same masks): use it only with num_workers=0.

    Returns:
        (batch, masks): ``batch`` from ``collate_fn`` (default: torch's default_collate), ``masks`` as returned
        by ``MultiBlockMaskGenerator.__call__`` for len(samples) clips.
    """

    def __init__(self, generator: MultiBlockMaskGenerator, collate_fn: Any = None) -> None:
        if not isinstance(generator, MultiBlockMaskGenerator):
            raise TypeError(f"generator must be a MultiBlockMaskGenerator, got {type(generator).__name__}")
        if collate_fn is None:
            from torch.utils.data import default_collate

            collate_fn = default_collate
        self.generator = generator
        self.collate_fn = collate_fn
        self._counter = 0

    def __call__(self, samples: Sequence[Any]) -> tuple[Any, list[MaskPair] | list[VarlenMaskPair]]:
        if len(samples) == 0:
            raise ValueError("samples must not be empty")
        first = samples[0]
        if isinstance(first, dict) and "draw" in first and "epoch" in first:
            step = _derive_seed(int(first["epoch"]), int(first["draw"]))
        else:
            step = _derive_seed(-1, self._counter)
            self._counter += 1
        masks = self.generator.for_step(len(samples), step)
        return self.collate_fn(list(samples)), masks
