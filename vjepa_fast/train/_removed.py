"""Modules of vjepa_fast.train that were removed: importing one raises a ModuleNotFoundError that says where
its names went (issue 26), instead of a bare "No module named"."""

from __future__ import annotations

import sys

REMOVED = {
    "vjepa_fast.train.probe": "linear_probe_accuracy is vjepa_fast.probes.metrics.linear_probe_accuracy; "
                              "the attentive probes are `vjepa-fast probe` (vjepa_fast.probes)",
    "vjepa_fast.train.sim_demo": "the simulator demo recipe is `vjepa-fast train-ac --preset sim_tiny`; "
                                 "PlannerPreprocess, episode_box and episode_cameras are in vjepa_fast.data.episodes, "
                                 "identity_init in vjepa_fast.train.ac, action_inference in vjepa_fast.diagnostics, "
                                 "probe_encoder is vjepa_fast.diagnostics.energy_quality (`vjepa-fast energy-quality`), "
                                 "make_encoder(name) is vjepa_fast.diagnostics.encoder_from_spec",
}


class RemovedModuleFinder:
    """A meta-path finder that refuses the names in REMOVED with the message of where their contents went."""

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None) -> None:
        if fullname in REMOVED:
            raise ModuleNotFoundError(f"{fullname} was removed: {REMOVED[fullname]}", name=fullname)


def install() -> None:
    if not any(isinstance(f, RemovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, RemovedModuleFinder())
