"""Attentive probes on a frozen encoder (V-JEPA 2's understanding and anticipation evals).

- `AttentiveClassifier` / `AttentivePooler` / `ProbeHeadConfig` (`probes.model`): Meta's probe, its key names;
  `multiview_probs` averages the softmax over spatial views.
- `load_meta_probe` (Meta's `classifiers[0]`, `module.*`), `load_hf_probe` (HF VJEPA2ForVideoClassification),
  `load_probe` (any of them or ours), `save_probe` (`probes.checkpoints`).
- `read_probe_csv`, `ProbeVideoDataset`, `encode_views` (`probes.data`); the feature cache (`probes.features`);
  metrics (`probes.metrics`); `train_probe` / `evaluate_probe` and the `vjepa-fast probe` command (`probes.run`).
"""

from vjepa_fast.probes.checkpoints import (
    hf_probe_state_dict,
    load_hf_probe,
    load_meta_probe,
    load_probe,
    meta_probe_state_dict,
    save_probe,
)
from vjepa_fast.probes.metrics import class_mean_recall_at_k, confusion_matrix, topk_accuracy
from vjepa_fast.probes.model import AttentiveClassifier, AttentivePooler, ProbeHeadConfig, multiview_probs

__all__ = [
    "AttentiveClassifier", "AttentivePooler", "ProbeHeadConfig", "multiview_probs", "load_meta_probe",
    "load_hf_probe", "load_probe", "save_probe", "meta_probe_state_dict", "hf_probe_state_dict",
    "topk_accuracy", "class_mean_recall_at_k", "confusion_matrix",
]
