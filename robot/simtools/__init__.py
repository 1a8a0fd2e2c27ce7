"""Tools that run on the simulator, on top of the rig (robot/) and the library (vjepa_fast):

- `generate` (kinematic episodes: `kinematic_arm`, franky-sim's IK and renderer) and `generate_physics` (episodes
  with contact: MuJoCo stepped in-process by `physics`, the gripper and the cubes free): training data;
- `tasks` (grasp / push / pick-and-place layouts, success checks, the scripted oracle, sub-goal images),
  `task_eval` and `sim_eval` (`vjepa-fast sim-eval`: closed-loop evaluation, reach through the real protocol;
  `eval_args` and `eval_report` its flags and tables), `task_run` (`run_mpc.py --sim --task`), `ceiling`
  (`vjepa-fast energy-ceiling`): evaluation.

The rig's own modules (robot/*.py: control, gripper, camera, safety, mpc, rig, sim) never import this package;
robot/run_mpc.py uses it only for `--sim --task` (a simulator-only mode). docs/ARCHITECTURE.md draws the layers.
"""
