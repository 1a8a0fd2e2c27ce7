"""Raw DROID reader: synthetic trajectory folders (real trajectory.h5 + MP4 files) with known motions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa_fast.data.droid import droid_clip_dataset, load_droid, read_droid_episode, read_droid_list
from vjepa_fast.data.preprocess import FramePreprocess
from vjepa_fast.data.robot_episode import EpisodeSkipped
from vjepa_fast.data.synthetic import write_video

h5py = pytest.importorskip("h5py")

W, H = 192, 108  # 16:9 like DROID's 1280x720, small so the test is fast
SERIAL = "23456789"


def _states(t: int, phase: float) -> np.ndarray:
    """Known motion per 15 Hz row: +1 cm in x, -0.5 cm in z, +0.05 rad about the fixed z axis, gripper +0.02;
    roll starts at pi - 0.1 (gripper down, as on DROID) so the Euler angles cross the +-pi seam."""
    i = np.arange(t, dtype=np.float64)
    return np.stack(
        [0.4 + 0.01 * i, 0.1 + 0 * i, 0.3 - 0.005 * i, np.full(t, math.pi - 0.1), np.zeros(t), phase + 0.05 * i,
         0.02 * i], axis=1)


def write_droid_episode(folder: Path, t: int, *, video_frames: int | None = None, phase: float = 0.0) -> np.ndarray:
    """A DROID-layout trajectory folder; frame i is flat grey with level 8 * i (so sampling is checkable)."""
    folder.mkdir(parents=True)
    states = _states(t, phase)
    with h5py.File(folder / "trajectory.h5", "w") as f:
        f["observation/robot_state/cartesian_position"] = states[:, :6]
        f["observation/robot_state/gripper_position"] = states[:, 6]
        f["observation/robot_state/joint_positions"] = np.zeros((t, 7))
        f["action/cartesian_position"] = states[:, :6]
        f["action/gripper_position"] = states[:, 6]
        f[f"observation/camera_type/{SERIAL}"] = np.ones(t, dtype=np.int64)
        f["observation/timestamp/robot_state/robot_timestamp_seconds"] = np.arange(t) / 15.0
    meta = {"ext1_cam_serial": SERIAL, "ext2_cam_serial": "11111111", "wrist_cam_serial": "22222222",
            "left_mp4_path": f"/data/droid/raw/recordings/MP4/{SERIAL}.mp4",
            "right_mp4_path": "/data/droid/raw/recordings/MP4/11111111.mp4"}
    (folder / "metadata_TEST+abcd+2023-07-07-10h-00m-00s.json").write_text(json.dumps(meta))
    mp4 = folder / "recordings" / "MP4"
    mp4.mkdir(parents=True)
    n = t if video_frames is None else video_frames
    frames = np.stack([np.full((H, W, 3), 8 * i, dtype=np.uint8) for i in range(n)])
    write_video(mp4 / f"{SERIAL}.mp4", frames, fps=30)  # header fps deliberately wrong: sampling is by index
    write_video(mp4 / "11111111.mp4", 255 - frames, fps=30)  # the right camera: must not be read
    return states


@pytest.fixture(scope="module")
def droid_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("droid")
    base = root / "1.0.1" / "LAB" / "success" / "2023-07-07"
    write_droid_episode(base / "Fri_Jul__7_10:00:00_2023", 30)
    write_droid_episode(base / "Fri_Jul__7_11:00:00_2023", 31, video_frames=30, phase=3.0)  # MP4 1 frame short
    bad_h5 = base / "Fri_Jul__7_12:00:00_2023"
    write_droid_episode(bad_h5, 30)
    (bad_h5 / "trajectory.h5").write_bytes(b"not an hdf5 file")
    no_rec = base / "Fri_Jul__7_13:00:00_2023"
    write_droid_episode(no_rec, 30)
    import shutil

    shutil.rmtree(no_rec / "recordings")  # some DROID episodes lack recordings/
    short = base / "Fri_Jul__7_14:00:00_2023"
    write_droid_episode(short, 10)
    lines = [f"{p} 42 extra-column" for p in sorted(base.iterdir())] + ["", "# comment"]
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


def test_list_file(droid_root):
    folders = read_droid_list(droid_root / "list.txt")
    assert len(folders) == 5 and all(Path(f).is_dir() for f in folders)


def test_episode_states_and_length(droid_root):
    folders = read_droid_list(droid_root / "list.txt")
    ep = read_droid_episode(folders[0])
    assert ep.num_frames == 30
    torch.testing.assert_close(ep.states, torch.from_numpy(_states(30, 0.0)))
    ep2 = read_droid_episode(folders[1])
    assert ep2.num_frames == 30  # min(len(video) = 30, T = 31)


def test_skips_are_counted(droid_root):
    episodes, skipped = load_droid(droid_root / "list.txt")
    assert len(episodes) == 3
    assert dict(skipped) == {"unreadable": 1, "missing": 1}
    _, skipped = load_droid(droid_root / "list.txt", min_frames=29)
    assert dict(skipped) == {"unreadable": 1, "missing": 1, "too_short": 1}
    with pytest.raises(EpisodeSkipped, match="missing"):
        read_droid_episode(droid_root / "nowhere")


def test_clips_match_hand_computed(droid_root):
    ds, skipped = droid_clip_dataset(droid_root / "list.txt", size=64)
    assert skipped["too_short"] == 1  # the 10-row episode cannot hold 8 frames at stride 4 (29 rows)
    assert len(ds) == 2 * (30 - 28)
    sample = ds[1]
    assert (sample["episode"], sample["start"]) == (0, 1)
    rows = [1 + 4 * k for k in range(8)]
    torch.testing.assert_close(sample["states"], torch.from_numpy(_states(30, 0.0)[rows]).float())
    # Between clip frames (4 rows): +4 cm x, -2 cm z, +0.2 rad about z, gripper +0.08; no roll/pitch change.
    expected = torch.tensor([0.04, 0.0, -0.02, 0.0, 0.0, 0.2, 0.08]).expand(7, 7)
    torch.testing.assert_close(sample["actions"], expected, atol=1e-6, rtol=0)
    frames = sample["frames"]
    assert frames.shape == (8, 3, 64, 64) and frames.dtype == torch.float32
    # Frame of row r has grey level 8r: undo the normalisation and check the index-based sampling.
    mean, std = torch.tensor(FramePreprocess().mean), torch.tensor(FramePreprocess().std)
    pixels = frames * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    levels = pixels.mean(dim=(1, 2, 3)) * 255
    torch.testing.assert_close(levels, torch.tensor([8.0 * r for r in rows]), atol=3.0, rtol=0)


def test_yaw_wrap_actions(droid_root):
    # Episode 2 starts at yaw 3.0 rad and crosses +pi: actions must stay +0.2 rad, not jump by 2 pi.
    ds, _ = droid_clip_dataset(droid_root / "list.txt", size=32)
    sample = ds[2]
    assert sample["episode"] == 1
    torch.testing.assert_close(sample["actions"][:, 5], torch.full((7,), 0.2), atol=1e-6, rtol=0)


def test_droid_preprocess_crops_to_aspect():
    # A 1280x720 frame whose outer 154 columns each side are red: the 972x720 center crop removes them.
    img = torch.zeros(1, 720, 1280, 3, dtype=torch.uint8)
    img[:, :, :154, 0] = 255
    img[:, :, -154:, 0] = 255
    out = FramePreprocess.droid(size=64)(img)
    assert out.shape == (1, 3, 64, 64)
    red = out[0, 0] * FramePreprocess().std[0] + FramePreprocess().mean[0]
    assert red.abs().max() < 1e-5
