"""Our episode format: EpisodeWriter -> read_episode round trip, crash-safe prefix, mp4 packing, skips."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vjepa_fast.data.episode_clips import EpisodeClipDataset, load_episodes
from vjepa_fast.data.episode_format import EpisodeWriter, find_episodes, read_episode
from vjepa_fast.data.preprocess import FramePreprocess


def _frame(i: int, size: int = 32) -> np.ndarray:
    img = np.zeros((size, size, 3), dtype=np.uint8)
    img[..., 1] = 7 * i
    img[i % size, :, 0] = 255
    return img


def _state(i: int) -> list[float]:
    # 2 cm per step in y, 0.1 rad per step about z, gripper closing 0.1 per step.
    return [0.5, 0.02 * i, 0.2, math.pi, 0.0, 0.1 * i, min(1.0, 0.1 * i)]


def _write(path, n: int, **kw):
    with EpisodeWriter(path, fps=4.0, camera="sim_front", extra={"task": "reach"}, **kw) as w:
        for i in range(n):
            action = [0.0, 0.02, 0.0, 0.0, 0.0, 0.1, 0.1] if i < n - 1 else None
            w.append(_frame(i), _state(i), action, timestamp=100.0 + 0.25 * i)
    return w


def test_round_trip(tmp_path):
    _write(tmp_path / "ep0", 12)
    meta = json.loads((tmp_path / "ep0" / "meta.json").read_text())
    assert meta["complete"] and meta["num_steps"] == 12 and meta["frames"] == "png" and meta["fps"] == 4.0
    ep = read_episode(tmp_path / "ep0")
    assert ep.num_frames == 12 and ep.fps == 4.0
    torch.testing.assert_close(ep.states, torch.tensor([_state(i) for i in range(12)], dtype=torch.float64))
    torch.testing.assert_close(ep.timestamps, 100.0 + 0.25 * torch.arange(12, dtype=torch.float64))
    assert torch.isnan(ep.commanded_actions[-1]).all()
    torch.testing.assert_close(ep.commanded_actions[0], torch.tensor([0.0, 0.02, 0.0, 0.0, 0.0, 0.1, 0.1],
                                                                     dtype=torch.float64))
    frames = ep.frames([3, 0, 3])
    assert frames.dtype == torch.uint8 and frames.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(frames[0].numpy(), _frame(3))  # PNG is lossless
    # Actions recomputed from states (the training convention) over a stride of 2 steps: hand-computed.
    a = ep.actions([0, 2, 4])
    torch.testing.assert_close(a, torch.tensor([[0.0, 0.04, 0.0, 0.0, 0.0, 0.2, 0.2]] * 2, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_crash_leaves_readable_prefix(tmp_path):
    w = EpisodeWriter(tmp_path / "ep", fps=4.0)
    for i in range(5):
        w.append(_frame(i), _state(i), None)
    w._steps.flush()
    # Simulate a crash mid-step: a torn JSON line, and a step whose frame never got renamed into place.
    with open(tmp_path / "ep" / "steps.jsonl", "a") as f:
        f.write('{"i": 5, "t": 1.25, "state": [0.5, 0.1')
    ep = read_episode(tmp_path / "ep")
    assert ep.num_frames == 5
    assert not json.loads((tmp_path / "ep" / "meta.json").read_text())["complete"]
    (tmp_path / "ep" / "frames" / "000004.png").unlink()
    assert read_episode(tmp_path / "ep").num_frames == 4


def test_mp4_packing(tmp_path):
    w = EpisodeWriter(tmp_path / "ep", fps=4.0)
    for i in range(9):
        w.append(np.full((32, 32, 3), 20 * i, dtype=np.uint8), _state(i), None)
    w.close(encode_mp4=True)
    assert (tmp_path / "ep" / "frames.mp4").is_file() and not (tmp_path / "ep" / "frames").exists()
    ep = read_episode(tmp_path / "ep")
    assert ep.num_frames == 9
    levels = ep.frames([0, 4, 8]).float().mean(dim=(1, 2, 3))
    torch.testing.assert_close(levels, torch.tensor([0.0, 80.0, 160.0]), atol=3.0, rtol=0)


def test_skips_and_find(tmp_path):
    _write(tmp_path / "a" / "ep0", 6)
    _write(tmp_path / "a" / "ep1", 3)
    bad = tmp_path / "a" / "ep2"
    _write(bad, 6)
    meta = json.loads((bad / "meta.json").read_text())
    (bad / "meta.json").write_text(json.dumps({**meta, "version": 99}))
    nan = tmp_path / "a" / "ep3"
    _write(nan, 6)
    lines = (nan / "steps.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"state": [0.5', '"state": [NaN')
    (nan / "steps.jsonl").write_text("\n".join(lines) + "\n")
    paths = find_episodes(tmp_path / "a")
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["ep0", "ep1", "ep2", "ep3"]
    episodes, skipped = load_episodes(paths + [str(tmp_path / "missing")], read_episode, min_frames=4)
    assert [e.key.rsplit("/", 1)[-1] for e in episodes] == ["ep0"]
    assert dict(skipped) == {"too_short": 1, "unreadable": 1, "bad_data": 1, "missing": 1}
    with pytest.raises(FileExistsError):
        EpisodeWriter(tmp_path / "a" / "ep0", fps=4.0)


def test_clip_dataset(tmp_path):
    _write(tmp_path / "ep0", 7)
    _write(tmp_path / "ep1", 5)
    episodes, _ = load_episodes(find_episodes(tmp_path), read_episode)
    ds = EpisodeClipDataset(episodes, frames_per_clip=3, frame_step=2, preprocess=FramePreprocess(size=32))
    assert len(ds) == (7 - 4) + (5 - 4)
    s = ds[3]
    assert (s["episode"], s["start"]) == (1, 0)
    assert s["frames"].shape == (3, 3, 32, 32) and s["actions"].shape == (2, 7) and s["states"].shape == (3, 7)
    with pytest.raises(ValueError, match="frames"):
        EpisodeClipDataset(episodes, frames_per_clip=8, frame_step=4)
    with pytest.raises(ValueError, match="7 values"):
        EpisodeWriter(tmp_path / "x", fps=1.0).append(_frame(0), [0.0] * 6)
