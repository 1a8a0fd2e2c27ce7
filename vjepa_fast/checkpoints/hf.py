"""The HF transformers VJEPA2 layout: state dicts converted both ways, configs, and HF model folders.

`to_hf_state_dict` / `hf_to_ours_state_dicts` / `from_hf_state_dict` convert weights (qkv split into
query/key/value and joined back, mask tokens stacked); `hf_config_dict` gives the equivalent `VJEPA2Config`
fields; `save_hf` / `load_hf` write and read a folder (`config.json` + `model.safetensors`) that
`transformers.VJEPA2Model.from_pretrained` loads.

V-JEPA 2.1 has no HF transformers counterpart (none in transformers 5.25.0, checked: its `vjepa2` model has
no taps, image path or interleaved RoPE), so 2.1 models are refused here with an error saying so; use
`save_safetensors` for them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vjepa_fast.checkpoints.common import CheckpointError, OfficialModels, PathLike, _read_safetensors
from vjepa_fast.checkpoints.inference import _build_models, _count
from vjepa_fast.fileio import atomic_write_text
from vjepa_fast.models.config import EncoderConfig, PredictorConfig
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.predictor import MaskedPredictor

_HF_BLOCK = {
    "norm1": "norm1",
    "attn.proj": "attention.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


HF_NO_V21 = ("HF transformers has no V-JEPA 2.1 model (transformers 5.25.0 checked: VJEPA2Model is V-JEPA 2 "
             "only); save V-JEPA 2.1 models with save_safetensors")


def _refuse_v21(config: Any, what: str) -> None:
    if getattr(config, "is_v21", False):
        raise ValueError(f"{what} is a V-JEPA 2.1 model: {HF_NO_V21}")


def _block_to_hf(
    prefix_ours: str, prefix_hf: str, sd: Mapping[str, torch.Tensor], out: dict[str, torch.Tensor]
) -> None:
    for ours, hf in _HF_BLOCK.items():
        for p in ("weight", "bias"):
            out[f"{prefix_hf}.{hf}.{p}"] = sd[f"{prefix_ours}.{ours}.{p}"]
    for p in ("weight", "bias"):
        q, k, v = sd[f"{prefix_ours}.attn.qkv.{p}"].chunk(3, dim=0)
        out[f"{prefix_hf}.attention.query.{p}"] = q
        out[f"{prefix_hf}.attention.key.{p}"] = k
        out[f"{prefix_hf}.attention.value.{p}"] = v


def to_hf_state_dict(encoder: VideoEncoder, predictor: MaskedPredictor | None = None) -> dict[str, torch.Tensor]:
    """State dict in HF transformers `VJEPA2Model` naming (qkv split into query/key/value, mask tokens
    stacked to [n, 1, 1, P]). Tensors are detached clones."""
    if not isinstance(encoder, VideoEncoder):
        raise TypeError(f"encoder must be a VideoEncoder, got {type(encoder).__name__}")
    if predictor is not None and not isinstance(predictor, MaskedPredictor):
        raise TypeError(
            f"predictor must be a MaskedPredictor (HF VJEPA2Model has no action-conditioned predictor), "
            f"got {type(predictor).__name__}"
        )
    _refuse_v21(encoder.config, "encoder")
    if predictor is not None:
        _refuse_v21(predictor.config, "predictor")
    sd = {k: v.detach() for k, v in encoder.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for p in ("weight", "bias"):
        out[f"encoder.embeddings.patch_embeddings.proj.{p}"] = sd[f"patch_embed.proj.{p}"]
        out[f"encoder.layernorm.{p}"] = sd[f"norm.{p}"]
    for i in range(encoder.config.depth):
        _block_to_hf(f"blocks.{i}", f"encoder.layer.{i}", sd, out)
    if predictor is not None:
        psd = {k: v.detach() for k, v in predictor.state_dict().items()}
        n = predictor.config.num_mask_tokens
        out["predictor.embeddings.mask_tokens"] = torch.stack([psd[f"mask_tokens.{i}"] for i in range(n)])
        for p in ("weight", "bias"):
            out[f"predictor.embeddings.predictor_embeddings.{p}"] = psd[f"predictor_embed.{p}"]
            out[f"predictor.layernorm.{p}"] = psd[f"predictor_norm.{p}"]
            out[f"predictor.proj.{p}"] = psd[f"predictor_proj.{p}"]
        for i in range(predictor.config.depth):
            _block_to_hf(f"predictor_blocks.{i}", f"predictor.layer.{i}", psd, out)
    return {k: v.clone().contiguous() for k, v in out.items()}


def _block_from_hf(prefix_hf: str, prefix_ours: str, sd: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    for ours, hf in _HF_BLOCK.items():
        for p in ("weight", "bias"):
            out[f"{prefix_ours}.{ours}.{p}"] = sd.pop(f"{prefix_hf}.{hf}.{p}")
    for p in ("weight", "bias"):
        parts = [sd.pop(f"{prefix_hf}.attention.{n}.{p}") for n in ("query", "key", "value")]
        out[f"{prefix_ours}.attn.qkv.{p}"] = torch.cat(parts, dim=0)


def hf_to_ours_state_dicts(
    state_dict: Mapping[str, torch.Tensor], source: str = "HF state dict"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Split an HF `VJEPA2Model` state dict into our encoder and predictor state dicts (qkv joined).

    A leading 'vjepa2.' (VJEPA2ForVideoClassification) is stripped and its pooler/classifier are ignored;
    any other unknown key is an error.
    """
    sd = {}
    for k, v in state_dict.items():
        name = k.removeprefix("vjepa2.")
        if name.startswith(("pooler.", "classifier.")):
            continue
        sd[name] = v
    enc: dict[str, torch.Tensor] = {}
    pred: dict[str, torch.Tensor] = {}
    try:
        for p in ("weight", "bias"):
            enc[f"patch_embed.proj.{p}"] = sd.pop(f"encoder.embeddings.patch_embeddings.proj.{p}")
            enc[f"norm.{p}"] = sd.pop(f"encoder.layernorm.{p}")
        for i in range(_count(sd, r"encoder\.layer\.(\d+)\.norm1\.weight")):
            _block_from_hf(f"encoder.layer.{i}", f"blocks.{i}", sd, enc)
        if any(k.startswith("predictor.") for k in sd):
            tokens = sd.pop("predictor.embeddings.mask_tokens")
            for i in range(tokens.shape[0]):
                pred[f"mask_tokens.{i}"] = tokens[i].clone()
            for p in ("weight", "bias"):
                pred[f"predictor_embed.{p}"] = sd.pop(f"predictor.embeddings.predictor_embeddings.{p}")
                pred[f"predictor_norm.{p}"] = sd.pop(f"predictor.layernorm.{p}")
                pred[f"predictor_proj.{p}"] = sd.pop(f"predictor.proj.{p}")
            for i in range(_count(sd, r"predictor\.layer\.(\d+)\.norm1\.weight")):
                _block_from_hf(f"predictor.layer.{i}", f"predictor_blocks.{i}", sd, pred)
    except KeyError as exc:
        raise CheckpointError(f"{source}: missing HF key {exc.args[0]!r}") from exc
    if sd:
        raise CheckpointError(f"{source}: unexpected HF keys {sorted(sd)[:8]} ({len(sd)})")
    return enc, (pred or None)


def from_hf_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    encoder_config: EncoderConfig | None = None,
    predictor_config: PredictorConfig | None = None,
    attn_impl: str = "sdpa",
    source: str = "HF state dict",
) -> OfficialModels:
    """Build our encoder (+ masked predictor) from an HF `VJEPA2Model` state dict."""
    enc, pred = hf_to_ours_state_dicts(state_dict, source)
    return _build_models(
        enc,
        pred,
        encoder_config=encoder_config,
        predictor_config=predictor_config,
        attn_impl=attn_impl,
        enc_source=f"{source} (encoder)",
        pred_source=f"{source} (predictor)",
    )


def hf_config_dict(encoder: EncoderConfig, predictor: PredictorConfig | None = None) -> dict[str, Any]:
    """Keyword arguments of an HF `VJEPA2Config` equivalent to our configs (square images only)."""
    _refuse_v21(encoder, "encoder_config")
    if predictor is not None:
        _refuse_v21(predictor, "predictor_config")
    hw = encoder.grid_hw
    if hw[0] != hw[1]:
        raise ValueError(f"HF VJEPA2 needs a square crop; EncoderConfig.img_size is {encoder.img_size}")
    out: dict[str, Any] = {
        "patch_size": encoder.patch_size,
        "crop_size": hw[0] * encoder.patch_size,
        "frames_per_clip": encoder.num_frames,
        "tubelet_size": encoder.tubelet_size,
        "hidden_size": encoder.embed_dim,
        "in_chans": encoder.in_chans,
        "num_attention_heads": encoder.num_heads,
        "num_hidden_layers": encoder.depth,
        "mlp_ratio": encoder.mlp_ratio,
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
        "hidden_act": "gelu",
    }
    if predictor is not None:
        if predictor.grid_hw != hw or predictor.patch_size != encoder.patch_size:
            raise ValueError("HF VJEPA2 uses one crop grid for encoder and predictor; the configs differ")
        out.update(
            pred_hidden_size=predictor.predictor_embed_dim,
            pred_num_attention_heads=predictor.num_heads,
            pred_num_hidden_layers=predictor.depth,
            pred_num_mask_tokens=predictor.num_mask_tokens,
            pred_mlp_ratio=predictor.mlp_ratio,
        )
    return out


def _configs_from_hf(cfg: Mapping[str, Any], source: str) -> tuple[EncoderConfig, PredictorConfig]:
    try:
        enc = EncoderConfig(
            embed_dim=cfg["hidden_size"],
            depth=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
            img_size=cfg["crop_size"],
            patch_size=cfg["patch_size"],
            num_frames=cfg["frames_per_clip"],
            tubelet_size=cfg["tubelet_size"],
            in_chans=cfg.get("in_chans", 3),
        )
        pred = PredictorConfig.for_encoder(
            enc,
            predictor_embed_dim=cfg["pred_hidden_size"],
            depth=cfg["pred_num_hidden_layers"],
            num_heads=cfg["pred_num_attention_heads"],
            num_mask_tokens=cfg["pred_num_mask_tokens"],
            mlp_ratio=float(cfg.get("pred_mlp_ratio", 4.0)),
        )
    except KeyError as exc:
        raise CheckpointError(f"{source}: HF config lacks field {exc.args[0]!r}") from exc
    return enc, pred


def save_hf(directory: PathLike, encoder: VideoEncoder, predictor: MaskedPredictor) -> Path:
    """Write `config.json` + `model.safetensors` that `transformers.VJEPA2Model.from_pretrained` loads."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "vjepa2",
        "architectures": ["VJEPA2Model"],
        **hf_config_dict(encoder.config, predictor.config),
    }
    atomic_write_text(d / "config.json", json.dumps(config, indent=2))
    tmp = d / f".model.safetensors.tmp-{os.getpid()}"
    save_file(to_hf_state_dict(encoder, predictor), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, d / "model.safetensors")
    return d


def load_hf(directory: PathLike, *, attn_impl: str = "sdpa", map_location: Any = "cpu") -> OfficialModels:
    """Load an HF VJEPA2 folder (`config.json` + `model.safetensors`) into our encoder and predictor."""
    d = Path(directory)
    cfg_path, weights = d / "config.json", d / "model.safetensors"
    for f in (cfg_path, weights):
        if not f.is_file():
            raise FileNotFoundError(f"HF VJEPA2 folder {d} lacks {f.name}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from exc
    enc_cfg, pred_cfg = _configs_from_hf(cfg, str(cfg_path))
    tensors, _ = _read_safetensors(weights, map_location)
    return from_hf_state_dict(
        tensors,
        encoder_config=enc_cfg.replace(attn_impl=attn_impl),
        predictor_config=pred_cfg.replace(attn_impl=attn_impl),
        attn_impl=attn_impl,
        source=str(weights),
    )

