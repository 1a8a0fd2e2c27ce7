"""Latent cache: build once from episodes, read by memmap; stale caches refused; cached == on-the-fly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vjepa_fast.data.episode_clips import EpisodeClipDataset
from vjepa_fast.data.episode_format import EpisodeWriter, find_episodes, read_episode
from vjepa_fast.data.preprocess import FramePreprocess
from vjepa_fast.data.latent_cache import (
    CachedClipDataset,
    FrameEncoder,
    LatentCache,
    StaleCacheError,
    build_latent_cache,
    encoder_fingerprint,
)
from vjepa_fast.models import EncoderConfig, VideoEncoder

torch.set_num_threads(2)
PRE = FramePreprocess(size=32)


def _encoder(seed: int = 0) -> VideoEncoder:
    torch.manual_seed(seed)
    return VideoEncoder(EncoderConfig.tiny(depth=1, img_size=32)).eval()


@pytest.fixture(scope="module")
def episodes_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eps")
    rng = np.random.default_rng(0)
    for e, n in enumerate((9, 6, 2)):
        with EpisodeWriter(root / f"ep{e}", fps=4.0) as w:
            for i in range(n):
                frame = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
                w.append(frame, [0.1 * i, 0.0, 0.0, 3.0, 0.0, 0.1 * i, 0.0])
    (root / "broken").mkdir()
    (root / "broken" / "meta.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def cache(episodes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    return build_latent_cache(out, find_episodes(episodes_dir), _encoder(), preprocess=PRE, reader=read_episode,
                              min_frames=3, batch_size=4)


def test_layout_and_skips(cache):
    h = cache.header
    assert h["skipped"] == {"missing": 1, "too_short": 1}  # broken/ has no steps.jsonl
    assert [e["length"] for e in h["episodes"]] == [9, 6] and h["num_frames"] == 15
    assert (h["tokens"], h["dim"], h["dtype"]) == (4, 96, "bfloat16")
    assert (cache.path / "latents.bin").stat().st_size == 15 * 4 * 96 * 2
    assert not list(cache.path.parent.glob(".*tmp*"))
    z = cache.latents(0, [0, 8])
    assert z.dtype == torch.bfloat16 and z.shape == (2, 4, 96)
    # Stored latents are layer-normed without affine: per-token mean 0, variance 1.
    zf = cache.latents(1, range(6)).float()
    torch.testing.assert_close(zf.mean(-1), torch.zeros(6, 4), atol=2e-2, rtol=0)
    torch.testing.assert_close(zf.var(-1, unbiased=False), torch.ones(6, 4), atol=2e-2, rtol=0)


def test_cached_matches_on_the_fly(cache, episodes_dir):
    eps = [read_episode(p) for p in cache.keys]
    pix = EpisodeClipDataset(eps, frames_per_clip=3, frame_step=2, preprocess=PRE)
    lat = CachedClipDataset(cache, frames_per_clip=3, frame_step=2)
    assert len(pix) == len(lat) == (9 - 4) + (6 - 4)
    fe = FrameEncoder(_encoder(), batch_size=2)
    for i in (0, 4, len(lat) - 1):
        a, b = lat[i], pix[i]
        assert (a["episode"], a["start"]) == (b["episode"], b["start"])
        torch.testing.assert_close(a["states"], b["states"])
        torch.testing.assert_close(a["actions"], b["actions"])
        otf = fe(b["frames"].unsqueeze(0))[0]
        assert otf.shape == a["latents"].shape == (3, 4, 96)
        # Equal up to bf16 storage rounding (8 mantissa bits: relative 2^-8 = 0.4%).
        torch.testing.assert_close(a["latents"], otf, atol=1e-2, rtol=2 ** -8)
        torch.testing.assert_close(a["latents"], otf.bfloat16().float(), atol=1e-2, rtol=0)


def test_stale_cache_refused(cache):
    LatentCache(cache.path, encoder=_encoder(), preprocess=PRE)  # same encoder weights: accepted
    with pytest.raises(StaleCacheError, match="another encoder"):
        LatentCache(cache.path, encoder=_encoder(seed=1))
    with pytest.raises(StaleCacheError, match="preprocessing"):
        LatentCache(cache.path, preprocess=FramePreprocess(size=64))
    with pytest.raises(StaleCacheError, match="frame_stride"):
        LatentCache(cache.path, frame_stride=4)
    assert encoder_fingerprint(_encoder()) == cache.header["encoder"]


def test_interrupted_or_existing(cache, episodes_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="header.json"):
        LatentCache(tmp_path)
    with pytest.raises(FileExistsError):
        build_latent_cache(cache.path, [], _encoder(), preprocess=PRE)
    bad = tmp_path / "c2"
    with pytest.raises(ValueError, match="no episode"):
        build_latent_cache(bad, [str(episodes_dir / "broken")], _encoder(), preprocess=PRE, reader=read_episode)
    assert not bad.exists() and not list(tmp_path.glob(".*tmp*"))
    # Rebuild with a stride over an existing cache (overwrite): frame j = source frame 2j.
    c = build_latent_cache(tmp_path / "c3", find_episodes(episodes_dir), _encoder(), preprocess=PRE,
                           reader=read_episode, frame_stride=2, dtype="float16")
    assert [e["length"] for e in c.episodes] == [5, 3, 1]
    torch.testing.assert_close(c.latents(0, [1]).float(), cache.latents(0, [2]).float(), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(c.states(0, [1]), cache.states(0, [2]))
    c = build_latent_cache(tmp_path / "c3", find_episodes(episodes_dir), _encoder(), preprocess=PRE,
                           reader=read_episode, overwrite=True)
    assert json.loads((c.path / "header.json").read_text())["frame_stride"] == 1
    train, held = c.split(0.34, seed=0)
    assert len(held) == 1 and sorted(train + held) == [0, 1, 2]
