"""scripts/sim_recipe.sh, the simulator recipe from nothing through the public commands, at smoke size: every
step runs and writes what the next one reads, and a second run resumes (nothing is redone)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("franky_sim")
pytest.importorskip("mujoco")

ROOT = Path(__file__).resolve().parents[1]
SMOKE = {"EPISODES": "6", "HELDOUT": "2", "PRETRAIN_STEPS": "6", "PRETRAIN_BATCH": "4", "AC_STEPS": "6",
         "GOALS": "1", "CEILING": "0", "WORKERS": "1"}


def _run(out: Path) -> str:
    env = {**os.environ, **SMOKE, "OUT": str(out), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "sim_recipe.sh")], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_and_resumes(tmp_path):
    from vjepa_fast.checkpoints import load_safetensors, safetensors_info

    out = tmp_path / "recipe"
    log = _run(out)
    assert "done in" in log
    episodes = sorted((out / "episodes").glob("ep_*"))
    assert len(episodes) == 6 and len(list((out / "heldout").glob("ep_*"))) == 2
    assert (out / "pretrain" / "encoder.safetensors").is_file()
    model = out / "world_model.safetensors"
    loaded = load_safetensors(model)
    pre = load_safetensors(out / "pretrain" / "encoder.safetensors").encoder
    for k, v in pre.state_dict().items():  # stage 2 froze the stage-1 encoder as it was
        assert (loaded.encoder.state_dict()[k] == v).all()
    info = safetensors_info(model)
    assert info["camera"] == "front_right" and info["encoder"].endswith("encoder.safetensors")
    rows = json.loads((out / "sim_eval" / "sim_eval.json").read_text())["summary"]
    assert [r["method"] for r in rows] == ["ours", "random-model", "random-actions", "oracle"]
    assert all(r["trials"] == 1 for r in rows)
    assert (out / "energy_quality" / "energy_quality.png").is_file()
    # Run again: every step finds its work done and keeps it.
    stamps = {p: p.stat().st_mtime_ns for p in (episodes[0] / "meta.json", out / "ac" / "latent_cache" / "latents.bin",
                                                 model, out / "sim_eval" / "trials.jsonl")}
    _run(out)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
