#!/usr/bin/env python3
"""Does the world model know what the gripper does? At every recorded step where the gripper changed (open ->
closed or back), the AC model predicts the next latent under the true action and under the same action with the
gripper change reversed; a model that has learned the gripper scores the true one closer to the recorded next
latent. Prints how often it does and the mean energy gap (reversed - true).

    .venv/bin/python scripts/gripper_sensitivity.py --world-model runs/manip/world_model.safetensors \\
        --cache runs/manip/ac/latent_cache
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
    p.add_argument("--max-steps", type=int, default=200, help="gripper-change steps to test")
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
    true_lower, gaps = 0, []
    for e in range(len(cache)):
        g = cache.states(e)[:, 6]
        for t in np.flatnonzero(np.abs(np.diff(g.float().numpy())) > 0.5).tolist():
            z = cache.latents(e, [t, t + 1]).float()
            st = cache.states(e, [t, t + 1]).float()
            act = actions_from_states(st)[0].float()
            rev = act.clone()
            rev[6] = -act[6]
            with torch.inference_mode():
                pred = wm.rollout(z[:1], st[:1], torch.stack([act, rev])[None, :, None])[0]
            energy = (pred - z[1]).abs().mean(dim=(-2, -1))
            true_lower += int(energy[0] < energy[1])
            gaps.append(float(energy[1] - energy[0]))
            if len(gaps) >= a.max_steps:
                break
        if len(gaps) >= a.max_steps:
            break
    if not gaps:
        print("gripper_sensitivity: no step in the cache changes the gripper", file=sys.stderr)
        return 2
    print(f"{len(gaps)} gripper-change steps: the true gripper action scores closer on {true_lower} "
          f"({100 * true_lower / len(gaps):.0f}%; chance 50%), mean energy gap (reversed - true) {np.mean(gaps):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
