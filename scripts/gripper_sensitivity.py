#!/usr/bin/env python3
"""Does the world model know what the gripper does? At every recorded step where the gripper changed (open ->
closed or back), the AC model predicts the next latent under the true action and under the same action with the
gripper change reversed; a model that has learned the gripper scores the true one closer to the recorded next
latent. Prints how often it does and the mean energy gap (reversed - true).

`--part xyz` asks the same of the hand's motion: at steps where the hand moved >= 2 cm, the true action against
its xyz reversed and against no motion (gripper kept), and the mean energies under each.

    .venv/bin/python scripts/gripper_sensitivity.py --world-model runs/manip/world_model.safetensors \\
        --cache runs/manip/ac/latent_cache [--part xyz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world-model", required=True, help="world_model.safetensors (encoder + AC predictor)")
    p.add_argument("--cache", required=True, help="a latent cache of that encoder (train-ac's OUT/latent_cache)")
    p.add_argument("--max-steps", type=int, default=200, help="steps to test")
    p.add_argument("--part", choices=("gripper", "xyz"), default="gripper",
                   help="what to reverse: the gripper change (default) or the hand's xyz motion")
    a = p.parse_args(argv)
    import numpy as np
    import torch

    from vjepa_fast.checkpoints import load_safetensors
    from vjepa_fast.data.latent_cache import LatentCache
    from vjepa_fast.planning import WorldModel
    from vjepa_fast.robotics.pose import actions_from_states

    m = load_safetensors(a.world_model)
    wm = WorldModel(m.encoder, m.predictor, dtype="float32")
    cache = LatentCache(a.cache, encoder=m.encoder)
    true_lower, zero_lower, gaps, energies = 0, 0, [], []
    for e in range(len(cache)):
        st_all = cache.states(e).float()
        if a.part == "gripper":
            steps = np.flatnonzero(np.abs(np.diff(st_all[:, 6].numpy())) > 0.5)
        else:
            steps = np.flatnonzero(np.linalg.norm(np.diff(st_all[:, :3].numpy(), axis=0), axis=1) >= 0.02)
        for t in steps.tolist():
            z = cache.latents(e, [t, t + 1]).float()
            st = st_all[t : t + 2]
            act = actions_from_states(st)[0].float()
            rev, zero = act.clone(), act.clone()
            if a.part == "gripper":
                rev[6] = -act[6]
            else:
                rev[:3] = -act[:3]
                zero[:3] = 0.0
            with torch.inference_mode():
                pred = wm.rollout(z[:1], st[:1], torch.stack([act, rev, zero])[None, :, None])[0]
            energy = (pred - z[1]).abs().mean(dim=(-2, -1))
            true_lower += int(energy[0] < energy[1])
            zero_lower += int(energy[0] < energy[2])
            gaps.append(float(energy[1] - energy[0]))
            energies.append(energy.tolist())
            if len(gaps) >= a.max_steps:
                break
        if len(gaps) >= a.max_steps:
            break
    if not gaps:
        print(f"gripper_sensitivity: no step in the cache changes the {a.part}", file=sys.stderr)
        return 2
    n, mean = len(gaps), np.mean(energies, axis=0)
    print(f"{n} {a.part}-change steps: the true action scores closer than the {a.part} reversed on {true_lower} "
          f"({100 * true_lower / n:.0f}%; chance 50%), mean energy gap (reversed - true) {np.mean(gaps):.5f}")
    if a.part == "xyz":
        print(f"  true closer than no motion on {zero_lower} ({100 * zero_lower / n:.0f}%); mean energy true "
              f"{mean[0]:.5f}, reversed {mean[1]:.5f}, no motion {mean[2]:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
