"""robot/collect.py against franky-sim: 2 episodes x 3 random moves, in our episode format, resumable."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")

os.environ.setdefault("MUJOCO_GL", "egl")


def test_collect_two_short_episodes(tmp_path: Path) -> None:
    from robot.collect import CollectConfig, collect, episode_dir
    from vjepa_fast.data.episode_format import find_episodes, read_episode

    cfg = CollectConfig(episodes=2, steps=3, max_delta=0.04, seed=3)
    out = tmp_path / "eps"
    t0 = time.monotonic()
    paths = collect(out, cfg, progress=False, work_dir=tmp_path / "sim")
    assert time.monotonic() - t0 < 60
    assert paths == [episode_dir(out, 0), episode_dir(out, 1)]
    assert sorted(Path(p).name for p in find_episodes(out)) == ["ep_000000", "ep_000001"]
    assert not list((tmp_path / ".eps.partial").iterdir())  # only complete episodes, renamed into place
    for path in paths:
        ep = read_episode(path)
        assert ep.states.shape == (4, 7) and ep.frames([0, 3]).shape == (2, 256, 256, 3)
        cmd = ep.commanded_actions
        assert cmd.shape == (4, 7) and bool(cmd[-1].isnan().all())  # the last step has no action
        moves = cmd[:3, :3].numpy()
        assert np.all(np.abs(moves) <= 0.04 + 1e-9)  # within +-max_delta per axis
        assert np.all(cmd[:3, 3:].numpy() == 0)  # rotation and gripper held
        # The measured pose followed the commands (impedance control: a few mm of lag at most).
        measured = np.diff(ep.states[:, :3].numpy(), axis=0)
        np.testing.assert_allclose(measured, moves, atol=5e-3)
        # Orientation held. The hand points down, roll ~ pi: the measured pose's Euler roll lands on either side of
        # +-pi, so angle differences are taken modulo 2 pi.
        d_rot = np.diff(ep.states[:, 3:6].numpy(), axis=0)
        assert np.abs((d_rot + np.pi) % (2 * np.pi) - np.pi).max() < 0.05
        assert float((ep.frames([0]).float() - ep.frames([3]).float()).abs().mean()) > 0.1  # the image changed
    # Resumable: a complete episode is kept, a torn one (no meta.json) is redone.
    stamp = (paths[0] / "steps.jsonl").stat().st_mtime_ns
    (paths[1] / "meta.json").unlink()
    collect(out, cfg, progress=False, work_dir=tmp_path / "sim2")
    assert (paths[0] / "steps.jsonl").stat().st_mtime_ns == stamp
    assert read_episode(paths[1]).states.shape == (4, 7)
