#!/usr/bin/env python3
"""The simulator's named cameras (robot/sim.py CAMERAS) at the corners of the collection box: a contact sheet
and, per camera, how large and how visible the hand (hand + fingers) is.

    MUJOCO_GL=egl .venv/bin/python scripts/experiments/sim_cameras.py --out benchmarks/sim_cameras.png

Poses: home, then the 8 corners of robot/collect.py's box; a corner out of the arm's reach is replaced by the
last reachable point on the straight way to it (robot/simtools/generate.py's reach test). The arm gets there as the
generator moves it (franky-sim's IK, in safe steps from franky-sim's initial q). Per pose and camera:
"area" = the hand's visible pixels / frame, "bbox" = the larger side of the box around the whole hand (visible
or not) in px, "visible" = visible / whole-hand pixels (1 = nothing in front of it), "edge" = the hand touches
the frame edge (cut off).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np


def arm_poses(scene) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, reached TCP xyz [3], scene qpos) for home and the 8 box corners."""
    from robot.collect import collection_box, collection_safety
    from robot.safety import safe_target

    arm = scene.arm
    arm.reset()
    home = arm.commanded.copy()
    lo, hi = collection_box(home, (0.12, 0.15, 0.12), 0.15, collection_safety(0.05))
    fine = collection_safety(0.01)  # 1.7 cm steps: stop close to the edge of the reach
    out = [("home", home, scene.qpos())]
    for corner in itertools.product(*zip(lo, hi)):
        corner = np.array(corner)
        arm.reset()
        here = home.copy()
        while np.linalg.norm(corner - here) > 1e-4:
            nxt, _ = safe_target(here, np.r_[corner - here, 0.0, 0.0, 0.0, 0.0], fine)
            if not arm.move_to(nxt):
                break
            here = nxt
        label = "".join("-+"[int(c > h)] for c, h in zip(corner, home))
        out.append((label if np.allclose(here, corner) else label + "*", here, scene.qpos()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/sim_cameras.png", help="contact sheet PNG")
    p.add_argument("--size", type=int, default=256, help="render size, px (statistics are at this size)")
    p.add_argument("--tile", type=int, default=112, help="tile size in the sheet, px")
    p.add_argument("--poses", type=int, default=5, help="poses per camera in the sheet (home + corners)")
    a = p.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco
    from PIL import Image

    from robot.simtools.generate import SimScene
    from robot.sim import CAMERAS

    scene = SimScene(next(iter(CAMERAS)), a.size)
    model = scene.renderer.model
    data = mujoco.MjData(model)
    hand = {mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, n)
            for n in ("robot0_hand", "robot0_left_finger", "robot0_right_finger")}
    hand_geoms = np.array([g for g in range(model.ngeom) if model.geom_bodyid[g] in hand])
    groups = model.geom_group.copy()
    renderer = mujoco.Renderer(model, a.size, a.size)
    poses = arm_poses(scene)
    print("poses (TCP m; * = the corner is out of reach, the last reachable point on the way):")
    for label, xyz, _ in poses:
        print(f"  {label:5s} {np.round(xyz, 3).tolist()}")
    print(f"{'camera':16s} {'area % min/mean':>16s} {'bbox px min/mean':>17s} {'visible min/mean':>17s} {'edge':>5s}")
    rows = []
    for name in CAMERAS:
        tiles, area, bbox, visible, edge = [], [], [], [], 0
        for _, _, qpos in poses:
            data.qpos[:] = qpos
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=name)
            rgb = renderer.render()
            renderer.enable_segmentation_rendering()
            renderer.update_scene(data, camera=name)
            seg = renderer.render()
            seen = (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & np.isin(seg[..., 0], hand_geoms)
            model.geom_group[:] = 5  # hide everything but the hand: group 5 off
            model.geom_group[hand_geoms] = groups[hand_geoms]
            option = mujoco.MjvOption()
            option.geomgroup[5] = 0
            renderer.update_scene(data, camera=name, scene_option=option)
            seg = renderer.render()
            model.geom_group[:] = groups
            renderer.disable_segmentation_rendering()
            whole = (seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & np.isin(seg[..., 0], hand_geoms)
            ys, xs = np.nonzero(whole)
            area.append(seen.mean())
            bbox.append(max(np.ptp(ys), np.ptp(xs)) + 1 if len(ys) else 0)
            visible.append(seen.sum() / max(1, whole.sum()))
            edge += bool(whole[0].any() or whole[-1].any() or whole[:, 0].any() or whole[:, -1].any())
            tiles.append(np.asarray(Image.fromarray(rgb).resize((a.tile, a.tile), Image.BILINEAR)))
        print(f"{name:16s} {100 * min(area):7.2f} /{100 * np.mean(area):6.2f} {min(bbox):8d} /{np.mean(bbox):6.1f} "
              f"{min(visible):8.2f} /{np.mean(visible):6.2f} {edge:3d}/{len(poses)}")
        rows.append(np.concatenate(tiles[: a.poses], axis=1))
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    sheet.save(a.out, optimize=True)
    print(f"contact sheet: {a.out} ({Path(a.out).stat().st_size // 1024} KB; rows {', '.join(CAMERAS)}; "
          f"columns {', '.join(label for label, _, _ in poses[: a.poses])})")
    renderer.close()
    scene.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
