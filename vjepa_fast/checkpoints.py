"""Checkpoint I/O: Meta's official .pt files, the HF transformers VJEPA2 layout, and our safetensors format.

Every file is read with `torch.load(..., weights_only=True)` (no pickled code runs) or with safetensors.
Every mismatch is a `CheckpointError` (a ValueError) naming the file, the entry and the keys at fault.
Models are built on the meta device and take the file's tensors (`load_state_dict(assign=True)`), so a
1B-parameter encoder is never randomly initialised just to be overwritten; parameters keep the file's dtype.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn as nn

from vjepa_fast.models.ac_predictor import ActionConditionedPredictor
from vjepa_fast.models.config import GIANT_MLP_RATIO, ACPredictorConfig, EncoderConfig, PredictorConfig
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.predictor import MaskedPredictor
from vjepa_fast.fileio import atomic_write_text

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
Predictor = Union[MaskedPredictor, ActionConditionedPredictor]
AnyConfig = Union[EncoderConfig, PredictorConfig, ACPredictorConfig]

FORMAT_KEY = "vjepa_fast_format"
FORMAT_VERSION = "1"
INFO_KEY = "vjepa_fast_info"  # JSON facts about the model (camera, recipe), see save_safetensors(info=...)

# Encoder widths of the released checkpoints -> (num_heads, mlp_ratio); image size 256, 64 frames (the hub's).
_KNOWN_ENCODERS: dict[int, tuple[int, float]] = {1024: (16, 4.0), 1280: (16, 4.0), 1408: (22, GIANT_MLP_RATIO)}
_PRESET_NAMES = {1024: "vit_large", 1280: "vit_huge", 1408: "vit_giant"}
_KNOWN_PREDICTOR_HEADS = {384: 12}  # hub masked predictors
_KNOWN_AC_HEADS = {1024: 16}  # V-JEPA 2-AC predictor
_IGNORED_KEYS = ("pos_embed", "predictor_pos_embed")  # absolute embeddings some files carry; RoPE needs none


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint, or whose tensors do not fit the requested model."""


@dataclass
class OfficialModels:
    """What a checkpoint holds: an encoder and an optional predictor.

    kind: "masked" (pretraining predictor), "ac" (action-conditioned predictor) or "encoder" (no predictor).
    """

    encoder: VideoEncoder | None
    predictor: Predictor | None
    kind: str

    def eval(self) -> OfficialModels:
        for m in (self.encoder, self.predictor):
            if m is not None:
                m.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> OfficialModels:
        for m in (self.encoder, self.predictor):
            if m is not None:
                m.to(*args, **kwargs)
        return self


# --------------------------------------------------------------------------------------------- reading files


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _torch_load(path: PathLike, map_location: Any) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    try:
        # mmap keeps multi-GB files (optimizer state included) out of RAM until a tensor is touched.
        return torch.load(p, map_location=map_location, weights_only=True, mmap=True)
    except Exception as mmap_exc:  # noqa: BLE001 - re-raised below with the file named
        first = mmap_exc
    try:
        # Legacy (non-zip) files cannot be memory-mapped; retry plainly so real errors surface.
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "GLOBAL" in ln), None)
        if detail is not None:
            raise CheckpointError(
                f"{p}: refused by torch.load(weights_only=True): the pickle references code or classes "
                f"other than tensors and plain containers, so it is not loaded ({detail})"
            ) from exc
        if "Weights only load failed" in str(exc):
            detail = next((ln for ln in lines if ln.startswith("Unsupported")), lines[0] if lines else "")
            reason = f"unreadable pickle: {detail}"
        else:
            reason = _first_line(exc)
        raise CheckpointError(
            f"{p}: not a readable PyTorch checkpoint (corrupt, truncated or another format): {reason}"
        ) from exc


def _clean_state_dict(sd: Any, source: str) -> dict[str, torch.Tensor]:
    """Strip the DDP 'module.' and MultiSeqWrapper 'backbone.' prefixes; drop pos_embed entries."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{source} is a {type(sd).__name__}, not a state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: entry {key!r} is not a named tensor ({type(value).__name__})")
        name = key
        for prefix in ("module.", "backbone."):
            name = name.removeprefix(prefix)
        if name in _IGNORED_KEYS:
            continue
        out[name] = value
    return out


# ------------------------------------------------------------------------------------------ shape inference


def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in sd if (m := rx.fullmatch(k))}
    return max(idx) + 1 if idx else 0


def _need(sd: Mapping[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    if key not in sd:
        raise CheckpointError(f"{source}: missing key {key!r} (is this the right checkpoint entry?)")
    return sd[key]


def _mlp_ratio(hidden: int, width: int) -> float:
    ratio = hidden / width
    if int(width * ratio) != hidden:  # keep int(width * ratio) == hidden, as the model computes it
        ratio = (hidden + 0.5) / width
    return ratio


def _check_given(given: Any, found: dict[str, Any], source: str, arg: str) -> None:
    wrong = {k: (getattr(given, k), v) for k, v in found.items() if getattr(given, k) != v}
    if wrong:
        details = ", ".join(f"{k}={a!r} but the file has {b!r}" for k, (a, b) in wrong.items())
        hint = ""
        width = found.get("embed_dim")
        if arg == "encoder_config" and width in _PRESET_NAMES:
            hint = f" (the file looks like EncoderConfig.{_PRESET_NAMES[width]}())"
        raise CheckpointError(f"{source}: {arg} does not match the checkpoint: {details}{hint}")


def infer_encoder_config(
    sd: Mapping[str, torch.Tensor],
    *,
    given: EncoderConfig | None = None,
    attn_impl: str = "sdpa",
    source: str = "encoder",
) -> EncoderConfig:
    """EncoderConfig of a (cleaned) encoder state dict; `given` is checked against the shapes.

    Widths 1024/1280/1408 map to the released ViT-L/H/g (256 px, 64 frames); any other width needs `given`.
    """
    w = _need(sd, "patch_embed.proj.weight", source)
    if w.dim() != 5:
        raise CheckpointError(f"{source}: patch_embed.proj.weight has shape {tuple(w.shape)}, expected 5-D Conv3d")
    width, in_chans, tubelet, patch = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    depth = _count(sd, r"blocks\.(\d+)\.norm1\.weight")
    hidden = _need(sd, "blocks.0.mlp.fc1.weight", source).shape[0]
    found = {"embed_dim": width, "depth": depth, "in_chans": in_chans, "tubelet_size": tubelet, "patch_size": patch}
    if given is not None:
        if not isinstance(given, EncoderConfig):
            raise TypeError(f"encoder_config must be an EncoderConfig, got {type(given).__name__}")
        _check_given(given, {**found}, source, "encoder_config")
        if given.mlp_hidden != hidden:
            raise CheckpointError(
                f"{source}: encoder_config gives MLP hidden {given.mlp_hidden} but the file has {hidden}"
            )
        return given.replace(attn_impl=attn_impl) if attn_impl != given.attn_impl else given
    if width not in _KNOWN_ENCODERS:
        raise CheckpointError(
            f"{source}: cannot infer EncoderConfig.num_heads (nor img_size, num_frames) from the shapes of a "
            f"width-{width} encoder; pass encoder_config=EncoderConfig(embed_dim={width}, depth={depth}, "
            f"num_heads=..., ...)"
        )
    heads, _ = _KNOWN_ENCODERS[width]
    return EncoderConfig(
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        mlp_ratio=_mlp_ratio(hidden, width),
        patch_size=patch,
        tubelet_size=tubelet,
        in_chans=in_chans,
        attn_impl=attn_impl,
    )


def _grid_fields(enc: EncoderConfig) -> dict[str, Any]:
    return {
        "img_size": enc.img_size,
        "patch_size": enc.patch_size,
        "num_frames": enc.num_frames,
        "tubelet_size": enc.tubelet_size,
    }


def infer_predictor_config(
    sd: Mapping[str, torch.Tensor],
    encoder: EncoderConfig,
    *,
    given: PredictorConfig | ACPredictorConfig | None = None,
    attn_impl: str = "sdpa",
    source: str = "predictor",
) -> PredictorConfig | ACPredictorConfig:
    """PredictorConfig or ACPredictorConfig (chosen by the keys) of a cleaned predictor state dict.

    Grid fields (img_size, num_frames, ...) come from `encoder`; head counts are known for the released
    widths (384 -> 12 heads, AC 1024 -> 16); anything else needs `given`.
    """
    is_ac = "action_encoder.weight" in sd
    cls: type[PredictorConfig] | type[ACPredictorConfig] = ACPredictorConfig if is_ac else PredictorConfig
    embed = _need(sd, "predictor_embed.weight", source)
    dim, width = embed.shape
    depth = _count(sd, r"predictor_blocks\.(\d+)\.norm1\.weight")
    hidden = _need(sd, "predictor_blocks.0.mlp.fc1.weight", source).shape[0]
    found: dict[str, Any] = {"embed_dim": width, "predictor_embed_dim": dim, "depth": depth}
    if is_ac:
        found["action_dim"] = sd["action_encoder.weight"].shape[1]
    else:
        found["num_mask_tokens"] = _count(sd, r"mask_tokens\.(\d+)")
    if given is not None:
        if not isinstance(given, cls):
            kind = "an action-conditioned" if is_ac else "a masked"
            raise CheckpointError(
                f"{source} holds {kind} predictor; predictor_config must be a {cls.__name__}, "
                f"got {type(given).__name__}"
            )
        _check_given(given, found, source, "predictor_config")
        if int(given.predictor_embed_dim * given.mlp_ratio) != hidden:
            raise CheckpointError(
                f"{source}: predictor_config gives MLP ratio {given.mlp_ratio}, the file has hidden {hidden}"
            )
        return given.replace(attn_impl=attn_impl) if attn_impl != given.attn_impl else given
    heads = (_KNOWN_AC_HEADS if is_ac else _KNOWN_PREDICTOR_HEADS).get(dim)
    if heads is None or encoder.embed_dim not in _KNOWN_ENCODERS:
        raise CheckpointError(
            f"{source}: cannot infer {cls.__name__}.num_heads (nor img_size, num_frames) from the shapes of a "
            f"width-{dim} predictor over a width-{width} encoder; pass predictor_config={cls.__name__}(...)"
        )
    return cls(
        **found,
        num_heads=heads,
        mlp_ratio=_mlp_ratio(hidden, dim),
        attn_impl=attn_impl,
        **_grid_fields(encoder),
    )


def _load_strict(module: nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True, assign=True) with an error that names every mismatching key."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and sd[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''} ({len(missing)})")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)})")
    if shapes:
        problems.append(f"wrong shapes [{'; '.join(shapes[:8])}]")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(sd, strict=True, assign=True)


def _build(cls: type[nn.Module], config: AnyConfig, sd: Mapping[str, torch.Tensor], source: str) -> Any:
    with torch.device("meta"):
        module = cls(config)
    _load_strict(module, sd, source)
    return module


def _build_models(
    enc_sd: Mapping[str, torch.Tensor] | None,
    pred_sd: Mapping[str, torch.Tensor] | None,
    *,
    encoder_config: EncoderConfig | None,
    predictor_config: PredictorConfig | ACPredictorConfig | None,
    attn_impl: str,
    enc_source: str,
    pred_source: str,
) -> OfficialModels:
    if enc_sd is None:
        raise CheckpointError(f"{enc_source}: no encoder weights")
    enc_cfg = infer_encoder_config(enc_sd, given=encoder_config, attn_impl=attn_impl, source=enc_source)
    encoder = _build(VideoEncoder, enc_cfg, enc_sd, enc_source)
    if pred_sd is None:
        return OfficialModels(encoder, None, "encoder")
    pred_cfg = infer_predictor_config(pred_sd, enc_cfg, given=predictor_config, attn_impl=attn_impl, source=pred_source)
    if pred_cfg.embed_dim != enc_cfg.embed_dim:
        raise CheckpointError(
            f"{pred_source}: predictor width {pred_cfg.embed_dim} != encoder width {enc_cfg.embed_dim}"
        )
    if isinstance(pred_cfg, ACPredictorConfig):
        return OfficialModels(encoder, _build(ActionConditionedPredictor, pred_cfg, pred_sd, pred_source), "ac")
    return OfficialModels(encoder, _build(MaskedPredictor, pred_cfg, pred_sd, pred_source), "masked")


# ------------------------------------------------------------------------------------------ official files


def load_official(
    path: PathLike,
    *,
    encoder_key: str = "target_encoder",
    encoder_config: EncoderConfig | None = None,
    predictor_config: PredictorConfig | ACPredictorConfig | None = None,
    attn_impl: str = "sdpa",
    map_location: Any = "cpu",
) -> OfficialModels:
    """Load one of Meta's official V-JEPA 2 / V-JEPA 2-AC .pt files.

    Handles the pretraining layout ('module.backbone.' names under encoder / target_encoder / predictor)
    and the AC layout ('module.' names under encoder / predictor). `encoder_key` picks the encoder entry
    ("target_encoder", the EMA weights used by the evals, or "encoder", the hub's choice); an AC file without
    a target encoder falls back to "encoder" (its encoder is frozen, so both are the same). The predictor kind
    follows from the keys. Sizes are inferred from shapes for the released widths (1024/1280/1408); for
    others pass `encoder_config` / `predictor_config`. vitg-384.pt needs the 384 px grid for its predictor:
    pass `PredictorConfig.vit_giant_384()` (shapes cannot tell 256 from 384).
    """
    if encoder_key not in ("target_encoder", "encoder"):
        raise ValueError(f"encoder_key must be 'target_encoder' or 'encoder', got {encoder_key!r}")
    p = Path(path)
    ckpt = _torch_load(p, map_location)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{p}: top level is a {type(ckpt).__name__}, expected a dict with encoder weights")
    pred_sd = _clean_state_dict(ckpt["predictor"], f"{p}['predictor']") if "predictor" in ckpt else None
    is_ac = pred_sd is not None and "action_encoder.weight" in pred_sd
    key = encoder_key
    if key not in ckpt:
        other = "encoder" if key == "target_encoder" else "target_encoder"
        if is_ac and other in ckpt:
            logger.info("%s has no %r entry; using %r (the AC encoder is frozen)", p, key, other)
            key = other
        else:
            found = sorted(k for k in ckpt if isinstance(k, str))
            raise CheckpointError(f"{p}: no {encoder_key!r} entry; top-level keys are {found}")
    enc_sd = _clean_state_dict(ckpt[key], f"{p}[{key!r}]")
    return _build_models(
        enc_sd,
        pred_sd,
        encoder_config=encoder_config,
        predictor_config=predictor_config,
        attn_impl=attn_impl,
        enc_source=f"{p}[{key!r}]",
        pred_source=f"{p}['predictor']",
    )


# ---------------------------------------------------------------------------------------- HF transformers

_HF_BLOCK = {
    "norm1": "norm1",
    "attn.proj": "attention.proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


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


# ------------------------------------------------------------------------------------ our safetensors format

_KIND_OF_CONFIG = {EncoderConfig: "encoder", PredictorConfig: "masked", ACPredictorConfig: "ac"}


def _roles(model_or_models: Any, config: AnyConfig | None) -> dict[str, nn.Module]:
    if isinstance(model_or_models, OfficialModels):
        roles = {"encoder": model_or_models.encoder, "predictor": model_or_models.predictor}
    elif isinstance(model_or_models, Mapping):
        roles = dict(model_or_models)
        bad = set(roles) - {"encoder", "predictor"}
        if bad:
            raise ValueError(f"model_or_models keys must be 'encoder' and/or 'predictor', got {sorted(bad)}")
    elif isinstance(model_or_models, VideoEncoder):
        roles = {"encoder": model_or_models}
    elif isinstance(model_or_models, (MaskedPredictor, ActionConditionedPredictor)):
        roles = {"predictor": model_or_models}
    else:
        raise TypeError(
            "model_or_models must be a VideoEncoder, a predictor, an OfficialModels or a dict of them, "
            f"got {type(model_or_models).__name__}"
        )
    roles = {k: v for k, v in roles.items() if v is not None}
    if not roles:
        raise ValueError("nothing to save: no encoder and no predictor")
    for role, module in roles.items():
        ok = (VideoEncoder,) if role == "encoder" else (MaskedPredictor, ActionConditionedPredictor)
        if not isinstance(module, ok):
            raise TypeError(f"{role} must be a {' or '.join(c.__name__ for c in ok)}, got {type(module).__name__}")
    if config is not None and len(roles) != 1:
        raise ValueError("config= is only accepted with a single module (each module of a group saves its own)")
    return roles


def save_safetensors(path: PathLike, model_or_models: Any, config: AnyConfig | None = None, *,
                     info: dict[str, Any] | None = None) -> Path:
    """Save an encoder and/or predictor in our safetensors format, configs as JSON metadata.

    model_or_models: a VideoEncoder, a MaskedPredictor / ActionConditionedPredictor, an OfficialModels, or a
    dict {"encoder": ..., "predictor": ...}. `config` (single module only) overrides `module.config`, e.g.
    to store another attn_impl; it must describe the same shapes. `info`: JSON-serialisable facts about the
    model (e.g. the camera it was trained on, how it was made), read back with `safetensors_info`. The write is
    atomic (temp file + rename).
    """
    from safetensors.torch import save_file

    roles = _roles(model_or_models, config)
    tensors: dict[str, torch.Tensor] = {}
    metadata = {"format": "pt", FORMAT_KEY: FORMAT_VERSION}
    if info:
        metadata[INFO_KEY] = json.dumps(info, sort_keys=True)
    for role, module in roles.items():
        cfg = config if config is not None else module.config
        if type(cfg) is not type(module.config):
            raise TypeError(f"config for the {role} must be a {type(module.config).__name__}, got {type(cfg).__name__}")
        metadata[f"{role}_config"] = json.dumps(cfg.to_dict())
        if role == "predictor":
            metadata["predictor_kind"] = _KIND_OF_CONFIG[type(cfg)]
        for k, v in module.state_dict().items():
            tensors[f"{role}.{k}"] = v.detach().to("cpu").contiguous()
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def safetensors_info(path: PathLike) -> dict[str, Any]:
    """The `info` dict stored by `save_safetensors` ({} when none), read from the header without the tensors."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get(INFO_KEY)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{p}: not a readable safetensors file: {_first_line(exc)}") from exc
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError as exc:
        raise CheckpointError(f"{p}: bad {INFO_KEY} metadata: {exc}") from exc
    return info if isinstance(info, dict) else {}


def _read_safetensors(path: Path, map_location: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    device = str(torch.device(map_location)) if map_location is not None else "cpu"
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(
            f"{path}: not a readable safetensors file (corrupt or truncated?): {_first_line(exc)}"
        ) from exc
    return tensors, metadata


def load_safetensors(path: PathLike, *, attn_impl: str | None = None, map_location: Any = "cpu") -> OfficialModels:
    """Load a file written by `save_safetensors`; the stored configs rebuild the models.

    attn_impl: overrides the stored attention implementation when given.
    """
    p = Path(path)
    tensors, metadata = _read_safetensors(p, map_location)
    if metadata.get(FORMAT_KEY) != FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: not a vjepa_fast safetensors file (metadata {FORMAT_KEY!r} is {metadata.get(FORMAT_KEY)!r}, "
            f"expected {FORMAT_VERSION!r}); for HF folders use load_hf"
        )
    parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "predictor": {}}
    for k, v in tensors.items():
        role, _, name = k.partition(".")
        if role not in parts:
            raise CheckpointError(f"{p}: unexpected key {k!r} (expected 'encoder.*' or 'predictor.*')")
        parts[role][name] = v
    built: dict[str, nn.Module | None] = {"encoder": None, "predictor": None}
    kind = "encoder"
    for role in ("encoder", "predictor"):
        raw = metadata.get(f"{role}_config")
        if raw is None:
            if parts[role]:
                raise CheckpointError(f"{p}: {role} tensors present but no '{role}_config' metadata")
            continue
        if role == "encoder":
            cls, cfg_cls = VideoEncoder, EncoderConfig
        else:
            kind = metadata.get("predictor_kind", "")
            if kind not in ("masked", "ac"):
                raise CheckpointError(f"{p}: predictor_kind metadata is {kind!r}, expected 'masked' or 'ac'")
            if kind == "masked":
                cls, cfg_cls = MaskedPredictor, PredictorConfig
            else:
                cls, cfg_cls = ActionConditionedPredictor, ACPredictorConfig
        try:
            cfg = cfg_cls.from_dict(json.loads(raw))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{p}: bad {role}_config metadata: {exc}") from exc
        if attn_impl is not None:
            cfg = cfg.replace(attn_impl=attn_impl)
        built[role] = _build(cls, cfg, parts[role], f"{p} ({role})")
    return OfficialModels(built["encoder"], built["predictor"], kind)  # type: ignore[arg-type]
