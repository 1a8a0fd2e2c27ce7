"""The real-time side of vjepa_fast: closed-loop latent MPC on a Franka arm (or franky-sim).

Processes (pylibfranka holds the GIL while it blocks, so each loop lives in its own process):
- control (`robot.control`): the 1 kHz pylibfranka loop, jerk-limited interpolation toward the latest target;
- camera (`robot.camera`): frames from a real camera, or rendered from the MuJoCo simulator;
- simulator (`robot.sim`): franky-sim's MuJoCo server speaking the libfranka protocol on loopback;
- planner (`robot.run_mpc`, the main process): observe -> encode -> plan -> safety -> send target.
They exchange state through shared memory (`robot.shm`). robot/ drives the planner; it never imports
training code.
"""

import os as _os

# MuJoCo picks its GL backend when it is first imported (by franky-sim or by our renderers): headless EGL
# (Mesa on a CPU) unless the user chose one. Without it, an import on a machine without a display aborts the
# process when the first renderer is made.
_os.environ.setdefault("MUJOCO_GL", "egl")
