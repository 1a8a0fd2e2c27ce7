"""The real-time side of vjepa_fast: closed-loop latent MPC on a Franka arm (or franky-sim).

Processes (pylibfranka holds the GIL while it blocks, so each loop lives in its own process):
- control (`robot.control`): the 1 kHz pylibfranka loop, jerk-limited interpolation toward the latest target;
- camera (`robot.camera`): frames from a real camera, or rendered from the MuJoCo simulator;
- simulator (`robot.sim`): franky-sim's MuJoCo server speaking the libfranka protocol on loopback;
- planner (`robot.run_mpc`, the main process): observe -> encode -> plan -> safety -> send target.
They exchange state through shared memory (`robot.shm`). robot/ drives the planner; it never imports
training code. The simulator's data and evaluation tools (episode generators, tasks, sim-eval) live in
`robot.simtools`, on top of the rig.
"""

import os as _os

# MuJoCo picks its GL backend when it is first imported (by franky-sim or by our renderers): headless EGL
# (Mesa on a CPU) unless the user chose one. Without it, an import on a machine without a display aborts the
# process when the first renderer is made.
_os.environ.setdefault("MUJOCO_GL", "egl")


# Modules that moved to robot.simtools (issue 26): `import robot.physics` and friends still work, with a
# DeprecationWarning that says where the module lives now.
_MOVED = ("ceiling", "generate", "generate_physics", "physics", "sim_eval", "task_eval", "tasks")


class _MovedModuleFinder:
    """Resolves robot.<old> to robot.simtools.<old> (the same module object) for the names in _MOVED."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):  # noqa: ANN001, ANN205 (importlib's finder protocol)
        head, _, name = fullname.rpartition(".")
        if head != __name__ or name not in _MOVED:
            return None
        import importlib.util
        import warnings

        warnings.warn(f"{fullname} moved to robot.simtools.{name}; import it from there",
                      DeprecationWarning, stacklevel=3)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(f"robot.simtools.{name}"))


class _AliasLoader:
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec):  # noqa: ANN001, ANN201
        import importlib

        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # noqa: ANN001
        pass


import sys as _sys  # noqa: E402

if not any(isinstance(f, _MovedModuleFinder) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _MovedModuleFinder())
