"""Probe checkpoints: Meta's released probes, Hugging Face `VJEPA2ForVideoClassification` heads, and ours.

What was checked (Meta's facebookresearch/vjepa2 code and the installed transformers 5.x, read with the code
search tool and from site-packages; no code copied):

- Meta (`src/models/attentive_pooler.py`, `src/models/utils/modules.py`, `evals/video_classification_frozen/
  eval.py`): the eval saves `{"classifiers": [c.state_dict() for c in classifiers], "opt", "scaler", "epoch",
  "batch_size", "world_size"}` with each classifier wrapped in DDP, so keys read `module.pooler.query_tokens`,
  `module.pooler.blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*`,
  `module.pooler.cross_attention_block.{norm1,xattn.q,xattn.kv,norm2,mlp.fc1,mlp.fc2}.*`,
  `module.linear.{weight,bias}`. CrossAttention has `q` and `kv` only (its `proj` is commented out in the
  reference). The LayerNorms are `nn.LayerNorm` (eps 1e-5). The number of heads is not in the file: the eval
  configs say it (`classifier.num_heads: 16`, `num_probe_blocks: 4` for SSv2 / Diving48 / EK-100 with ViT-L, H
  and g), so `num_heads` is an argument, default 16. The reference evaluates `classifiers[0]` when there are
  several (one per hyper-parameter set); `index` picks another.
- Hugging Face (`transformers/models/vjepa2/modeling_vjepa2.py`): `pooler.query_tokens`,
  `pooler.self_attention_layers.{i}.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}`,
  `pooler.cross_attention_layer.{layer_norm1, cross_attn.{q,k,v}_proj, layer_norm2, mlp.fc1, mlp.fc2}`,
  `classifier.{weight,bias}`; the self-attention layers run before the cross-attention, as Meta's blocks.
  Two differences from Meta that HF's own forward has and that we reproduce when loading an HF head: its
  pooler LayerNorms use `config.layer_norm_eps` (1e-6 by default, not 1e-5), and its pooler heads are
  `config.num_attention_heads` (the encoder's: 16 for ViT-L/H, 22 for ViT-g, whose Meta probes were trained
  with 16). Pass `num_heads` / `norm_eps` to override.
- Mapping: Meta qkv rows are [q | k | v] (heads inside each), kv rows [k | v]; HF splits them into q/k/v_proj.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vjepa_fast.checkpoints.common import CheckpointError, _torch_load
from vjepa_fast.probes.model import META_PROBE_LN_EPS, AttentiveClassifier, ProbeHeadConfig

__all__ = [
    "load_meta_probe", "load_hf_probe", "load_probe", "save_probe", "meta_probe_state_dict",
    "hf_probe_state_dict", "probe_config_from_state_dict",
]

PathLike = str | os.PathLike
_FORMAT = "vjepa_fast.probe"


def probe_config_from_state_dict(sd: Mapping[str, torch.Tensor], *, num_heads: int = 16,
                                 norm_eps: float = META_PROBE_LN_EPS, source: str = "state dict") -> ProbeHeadConfig:
    """ProbeHeadConfig of a state dict in our (= Meta's, unprefixed) key layout; shapes read from the tensors."""
    for key in ("pooler.query_tokens", "linear.weight", "pooler.cross_attention_block.mlp.fc1.weight"):
        if key not in sd:
            raise CheckpointError(f"{source}: no '{key}': not an attentive probe (keys: {sorted(sd)[:6]} ...)")
    _, nq, dim = sd["pooler.query_tokens"].shape
    blocks = {int(k.split(".")[2]) for k in sd if k.startswith("pooler.blocks.")}
    hidden = sd["pooler.cross_attention_block.mlp.fc1.weight"].shape[0]
    return ProbeHeadConfig(embed_dim=int(dim), num_classes=int(sd["linear.weight"].shape[0]), num_heads=num_heads,
                           depth=len(blocks) + 1, mlp_ratio=hidden / dim, num_queries=int(nq), norm_eps=norm_eps,
                           qkv_bias="pooler.cross_attention_block.xattn.q.bias" in sd)


def _build(sd: Mapping[str, torch.Tensor], cfg: ProbeHeadConfig, source: str) -> AttentiveClassifier:
    probe = AttentiveClassifier(cfg)
    missing, unexpected = probe.load_state_dict(dict(sd), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{source}: probe keys do not match (missing {missing[:4]}, unexpected "
                              f"{unexpected[:4]})")
    return probe.eval()


# ------------------------------------------------------------------------------------------------------ Meta
def load_meta_probe(path_or_obj: PathLike | Mapping[str, Any], *, num_heads: int = 16, index: int = 0,
                    norm_eps: float = META_PROBE_LN_EPS) -> AttentiveClassifier:
    """A probe from Meta's eval checkpoint (e.g. ssv2-vitg-384-64x2x3.pt): `classifiers[index]`, `module.`
    stripped. num_heads is not stored in the file (16 in all of V-JEPA 2's eval configs)."""
    source = str(path_or_obj) if not isinstance(path_or_obj, Mapping) else "checkpoint"
    ckpt = _torch_load(path_or_obj, "cpu") if not isinstance(path_or_obj, Mapping) else path_or_obj
    if not isinstance(ckpt, Mapping) or "classifiers" not in ckpt:
        keys = sorted(ckpt)[:8] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{source}: no 'classifiers' entry (found {keys}): not a Meta probe checkpoint")
    heads = ckpt["classifiers"]
    if isinstance(heads, Mapping):
        heads = [heads]
    if not 0 <= index < len(heads):
        raise CheckpointError(f"{source}: classifier index {index} out of range ({len(heads)} classifiers)")
    sd = {k.removeprefix("module."): v for k, v in heads[index].items()}
    return _build(sd, probe_config_from_state_dict(sd, num_heads=num_heads, norm_eps=norm_eps, source=source), source)


def meta_probe_state_dict(probe: AttentiveClassifier) -> dict[str, Any]:
    """The probe as Meta's eval saves it: {"classifiers": [{"module." + key: tensor}], "epoch": 0}."""
    return {"classifiers": [{f"module.{k}": v.detach().cpu() for k, v in probe.state_dict().items()}], "epoch": 0}


# ------------------------------------------------------------------------------------------------------ HF
_HF_LAYER = {"layer_norm1": "norm1", "layer_norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def _hf_to_ours(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    sd = {k.removeprefix("module."): v for k, v in sd.items() if k.startswith(("pooler.", "classifier.", "module."))}
    if "pooler.query_tokens" not in sd or "classifier.weight" not in sd:
        raise CheckpointError(f"{source}: no 'pooler.query_tokens' / 'classifier.weight': not an HF "
                              "VJEPA2ForVideoClassification state dict")
    out = {"pooler.query_tokens": sd["pooler.query_tokens"], "linear.weight": sd["classifier.weight"],
           "linear.bias": sd["classifier.bias"]}
    layers = sorted({int(k.split(".")[2]) for k in sd if k.startswith("pooler.self_attention_layers.")})
    for i in layers:
        hf, ours = f"pooler.self_attention_layers.{i}.", f"pooler.blocks.{i}."
        for h, o in _HF_LAYER.items():
            for p in ("weight", "bias"):
                out[f"{ours}{o}.{p}"] = sd[f"{hf}{h}.{p}"]
        for p in ("weight", "bias"):
            out[f"{ours}attn.qkv.{p}"] = torch.cat([sd[f"{hf}self_attn.{n}_proj.{p}"] for n in "qkv"])
            out[f"{ours}attn.proj.{p}"] = sd[f"{hf}self_attn.out_proj.{p}"]
    hf, ours = "pooler.cross_attention_layer.", "pooler.cross_attention_block."
    for h, o in _HF_LAYER.items():
        for p in ("weight", "bias"):
            out[f"{ours}{o}.{p}"] = sd[f"{hf}{h}.{p}"]
    for p in ("weight", "bias"):
        out[f"{ours}xattn.q.{p}"] = sd[f"{hf}cross_attn.q_proj.{p}"]
        out[f"{ours}xattn.kv.{p}"] = torch.cat([sd[f"{hf}cross_attn.k_proj.{p}"], sd[f"{hf}cross_attn.v_proj.{p}"]])
    return out


def hf_probe_state_dict(probe: AttentiveClassifier) -> dict[str, torch.Tensor]:
    """The probe's tensors under HF VJEPA2ForVideoClassification's names (pooler.*, classifier.*)."""
    sd = {k: v.detach().cpu() for k, v in probe.state_dict().items()}
    d = probe.config.embed_dim
    out = {"pooler.query_tokens": sd["pooler.query_tokens"], "classifier.weight": sd["linear.weight"],
           "classifier.bias": sd["linear.bias"]}
    for i in range(probe.config.depth - 1):
        hf, ours = f"pooler.self_attention_layers.{i}.", f"pooler.blocks.{i}."
        for h, o in _HF_LAYER.items():
            for p in ("weight", "bias"):
                out[f"{hf}{h}.{p}"] = sd[f"{ours}{o}.{p}"]
        for p in ("weight", "bias"):
            for j, n in enumerate("qkv"):
                out[f"{hf}self_attn.{n}_proj.{p}"] = sd[f"{ours}attn.qkv.{p}"][j * d : (j + 1) * d]
            out[f"{hf}self_attn.out_proj.{p}"] = sd[f"{ours}attn.proj.{p}"]
    hf, ours = "pooler.cross_attention_layer.", "pooler.cross_attention_block."
    for h, o in _HF_LAYER.items():
        for p in ("weight", "bias"):
            out[f"{hf}{h}.{p}"] = sd[f"{ours}{o}.{p}"]
    for p in ("weight", "bias"):
        out[f"{hf}cross_attn.q_proj.{p}"] = sd[f"{ours}xattn.q.{p}"]
        out[f"{hf}cross_attn.k_proj.{p}"] = sd[f"{ours}xattn.kv.{p}"][:d]
        out[f"{hf}cross_attn.v_proj.{p}"] = sd[f"{ours}xattn.kv.{p}"][d:]
    return out


def load_hf_probe(source: PathLike | Mapping[str, torch.Tensor], *, num_heads: int | None = None,
                  norm_eps: float | None = None) -> AttentiveClassifier:
    """The probe head of an HF VJEPA2ForVideoClassification: a state dict, a .safetensors / .bin file, or the
    model folder (config.json + model.safetensors). num_heads / norm_eps default to what HF's own forward uses:
    config.num_attention_heads and config.layer_norm_eps (16 and 1e-6 when no config is given)."""
    hf_cfg: dict[str, Any] = {}
    name = "state dict"
    if isinstance(source, Mapping):
        sd = dict(source)
    else:
        p = Path(source)
        name = str(p)
        if p.is_dir():
            if (p / "config.json").is_file():
                hf_cfg = json.loads((p / "config.json").read_text())
            files = sorted(p.glob("*.safetensors")) or sorted(p.glob("pytorch_model*.bin"))
            if not files:
                raise CheckpointError(f"{p}: no *.safetensors or pytorch_model*.bin in the folder")
        elif p.is_file():
            files = [p]
        else:
            raise FileNotFoundError(f"HF probe source not found: {p}")
        sd = {}
        for f in files:
            if f.suffix == ".safetensors":
                from safetensors.torch import load_file

                sd.update(load_file(str(f)))
            else:
                sd.update(_torch_load(f, "cpu"))
    heads = num_heads if num_heads is not None else int(hf_cfg.get("num_attention_heads", 16))
    eps = norm_eps if norm_eps is not None else float(hf_cfg.get("layer_norm_eps", 1e-6))
    ours = _hf_to_ours(sd, name)
    return _build(ours, probe_config_from_state_dict(ours, num_heads=heads, norm_eps=eps, source=name), name)


# ------------------------------------------------------------------------------------------------------ ours
def save_probe(path: PathLike, probe: AttentiveClassifier, *, info: Mapping[str, Any] | None = None) -> Path:
    """Our probe file: safetensors with the ProbeHeadConfig (and `info`: class names, encoder, metrics) as JSON
    metadata; written atomically."""
    from safetensors.torch import save

    from vjepa_fast.fileio import atomic_write_bytes

    tensors = {k: v.detach().cpu().contiguous() for k, v in probe.state_dict().items()}
    meta = {"format": _FORMAT, "config": json.dumps(probe.config.to_dict()), "info": json.dumps(dict(info or {}))}
    return atomic_write_bytes(path, save(tensors, metadata=meta))


def _load_ours(path: Path) -> tuple[AttentiveClassifier, dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        sd = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path}: not a vjepa_fast probe file (format {meta.get('format')!r})")
    cfg = ProbeHeadConfig.from_dict(json.loads(meta["config"]))
    return _build(sd, cfg, str(path)), json.loads(meta.get("info", "{}"))


def load_probe(path: PathLike, *, num_heads: int | None = None, index: int = 0) -> tuple[AttentiveClassifier, dict]:
    """Any probe file: ours (.safetensors with our metadata), Meta's eval checkpoint (.pt with `classifiers`),
    or an HF VJEPA2ForVideoClassification folder / file. Returns (probe, info); info is {} for foreign files.
    num_heads: for Meta / HF files (not stored in Meta's; default 16 / the HF config's)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"probe checkpoint not found: {p}")
    if p.is_dir():
        return load_hf_probe(p, num_heads=num_heads), {}
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as f:
            fmt = (f.metadata() or {}).get("format")
        if fmt == _FORMAT:
            return _load_ours(p)
        return load_hf_probe(p, num_heads=num_heads), {}
    ckpt = _torch_load(p, "cpu")
    if isinstance(ckpt, Mapping) and "classifiers" in ckpt:
        return load_meta_probe(ckpt, num_heads=16 if num_heads is None else num_heads, index=index), {}
    if isinstance(ckpt, Mapping) and any(str(k).startswith(("pooler.", "classifier.")) for k in ckpt):
        return load_hf_probe(ckpt, num_heads=num_heads), {}
    raise CheckpointError(f"{p}: neither our probe file, Meta's eval checkpoint (`classifiers`) nor an HF head")
