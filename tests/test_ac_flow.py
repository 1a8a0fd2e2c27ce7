"""The README's three-command flow, small, against the simulator: record episodes (robot/simtools/generate.py, and
robot/collect.py through the libfranka protocol) -> `vjepa-fast train-ac --config configs/ac_sim_tiny.toml` on
both folders (it builds the latent cache itself) -> `robot/run_mpc.py --sim --predictor` with the new model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pylibfranka")
pytest.importorskip("franky_sim")

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, " ".join(args) + "\n" + proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_record_train_ac_plan(tmp_path: Path) -> None:
    from vjepa_fast.checkpoints import load_safetensors, safetensors_info

    data, recorded, run, mpc = tmp_path / "sim_random", tmp_path / "recorded", tmp_path / "ac", tmp_path / "mpc"
    # 1. record (the README's command, fewer and shorter episodes; and the protocol-level recorder)
    _run([sys.executable, "robot/simtools/generate.py", "--out", str(data), "--episodes", "4", "--steps", "4",
          "--workers", "1"], timeout=600)
    _run([sys.executable, "robot/collect.py", "--out", str(recorded), "--episodes", "2", "--steps", "4"], timeout=600)
    # 2. train-ac from the example config, on both folders (weighted), as written except the sizes
    train = _run([sys.executable, "-m", "vjepa_fast.cli", "train-ac", "--config", "configs/ac_sim_tiny.toml",
                  f'data.sources=["{data}", "{recorded}"]', "data.weights=[2.0, 1.0]", f'out_dir="{run}"',
                  "total_steps=4", "batch_size=2", "frames_per_clip=3", "ckpt_every=2", "val_fraction=0.34",
                  "progress=false"], timeout=600)
    assert "world_model: " in train.stdout
    header = json.loads((run / "latent_cache" / "header.json").read_text())
    assert len(header["episodes"]) == 6 and header["preprocess"]["kind"] == "eval_resize_center_crop"
    model = run / "world_model.safetensors"
    info = safetensors_info(model)
    assert info["camera"] == "front_right" and info["episodes"] == 6 and len(info["data_box"]) == 2
    shipped = load_safetensors(ROOT / "robot" / "assets" / "sim_demo_world_model.safetensors")
    ours = load_safetensors(model)
    for k, v in shipped.encoder.state_dict().items():  # the config's frozen encoder: the shipped one
        assert (ours.encoder.state_dict()[k] == v).all(), k
    # 3. plan and act with the new predictor
    proc = _run([sys.executable, "robot/run_mpc.py", "--sim", "--predictor", str(model), "--goal-offset", "0.03",
                 "0.03", "-0.03", "--max-steps", "2", "--log-dir", str(mpc), "--samples", "16", "--topk", "4",
                 "--iterations", "2"], timeout=600)
    assert "2 steps, finished" in proc.stdout
    assert "simulator demo world model" not in proc.stderr  # it planned with the file it was given
    summary = json.loads((mpc / "summary.json").read_text())
    assert summary["ok"] and summary["steps"] == 2
