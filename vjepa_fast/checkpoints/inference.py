"""Config inference from tensor shapes, and building encoder + predictor from state dicts.

`infer_encoder_config` / `infer_predictor_config` read widths, depths and MLP sizes from the shapes (head
counts and grids are known for the released widths; other sizes need a given config, which is then checked
against the shapes); `_build_models` builds both models with the inferred configs (used by the Meta and HF
loaders).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import torch

from vjepa_fast.checkpoints.common import CheckpointError, OfficialModels, _build
from vjepa_fast.models.ac_predictor import ActionConditionedPredictor
from vjepa_fast.models.config import (
    GIANT_MLP_RATIO,
    GIGANTIC_MLP_RATIO,
    VJEPA2,
    VJEPA2_1,
    ACPredictorConfig,
    EncoderConfig,
    PredictorConfig,
)
from vjepa_fast.models.encoder import VideoEncoder
from vjepa_fast.models.predictor import MaskedPredictor

# Encoder widths of the released checkpoints -> (num_heads, mlp_ratio); image size 256, 64 frames (the hub's).
_KNOWN_ENCODERS: dict[int, tuple[int, float]] = {1024: (16, 4.0), 1280: (16, 4.0), 1408: (22, GIANT_MLP_RATIO)}
_PRESET_NAMES = {1024: "vit_large", 1280: "vit_huge", 1408: "vit_giant"}
_KNOWN_PREDICTOR_HEADS = {384: 12}  # hub masked predictors
_KNOWN_AC_HEADS = {1024: 16}  # V-JEPA 2-AC predictor
# V-JEPA 2.1 encoder widths -> (num_heads, mlp_ratio); all released at 384 px, 64 frames, interpolate_rope.
_KNOWN_V21_ENCODERS: dict[int, tuple[int, float]] = {
    768: (12, 4.0), 1024: (16, 4.0), 1408: (22, GIANT_MLP_RATIO), 1664: (26, GIGANTIC_MLP_RATIO)}
_V21_PRESET_NAMES = {768: "vjepa2_1_vit_base_384", 1024: "vjepa2_1_vit_large_384", 1408: "vjepa2_1_vit_giant_384",
                     1664: "vjepa2_1_vit_gigantic_384"}

_LOG = logging.getLogger(__name__)


def is_v21_encoder(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for a (cleaned) V-JEPA 2.1 encoder state dict: it has per-tap norms (`norms_block.*`)."""
    return any(k.startswith("norms_block.") for k in sd)


def is_v21_predictor(sd: Mapping[str, torch.Tensor]) -> bool:
    """True for a (cleaned) V-JEPA 2.1 masked predictor: a context head, modality embeddings or an MLP input."""
    return any(k.startswith(("predictor_proj_context.", "predictor_embed.0.")) or k.endswith("mod_embed")
               for k in sd)


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
        names = _V21_PRESET_NAMES if found.get("version") == VJEPA2_1 else _PRESET_NAMES
        if arg == "encoder_config" and width in names:
            hint = f" (the file looks like EncoderConfig.{names[width]}())"
        raise CheckpointError(f"{source}: {arg} does not match the checkpoint: {details}{hint}")


def infer_encoder_config(
    sd: Mapping[str, torch.Tensor],
    *,
    given: EncoderConfig | None = None,
    attn_impl: str | None = None,
    source: str = "encoder",
) -> EncoderConfig:
    """EncoderConfig of a (cleaned) encoder state dict; `given` is checked against the shapes.

    Widths 1024/1280/1408 map to the released ViT-L/H/g (256 px, 64 frames); a V-JEPA 2.1 encoder (it has
    `norms_block.*`) of width 768/1024/1408/1664 to the released 2.1 B/L/g/G (384 px, 64 frames, interpolated
    RoPE); any other width needs `given`.
    """
    w = _need(sd, "patch_embed.proj.weight", source)
    if w.dim() != 5:
        raise CheckpointError(f"{source}: patch_embed.proj.weight has shape {tuple(w.shape)}, expected 5-D Conv3d")
    width, in_chans, tubelet, patch = w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    depth = _count(sd, r"blocks\.(\d+)\.norm1\.weight")
    hidden = _need(sd, "blocks.0.mlp.fc1.weight", source).shape[0]
    found = {"embed_dim": width, "depth": depth, "in_chans": in_chans, "tubelet_size": tubelet, "patch_size": patch}
    v21 = is_v21_encoder(sd)
    found["version"] = VJEPA2_1 if v21 else VJEPA2
    if v21:
        found["modality_embedding"] = "video_mod_embed" in sd
        found["image_patch_embed"] = "patch_embed_img.proj.weight" in sd
    if given is not None:
        if not isinstance(given, EncoderConfig):
            raise TypeError(f"encoder_config must be an EncoderConfig, got {type(given).__name__}")
        _check_given(given, {**found}, source, "encoder_config")
        if given.mlp_hidden != hidden:
            raise CheckpointError(
                f"{source}: encoder_config gives MLP hidden {given.mlp_hidden} but the file has {hidden}"
            )
        return given.replace(attn_impl=attn_impl) if attn_impl not in (None, given.attn_impl) else given
    known = _KNOWN_V21_ENCODERS if v21 else _KNOWN_ENCODERS
    if width not in known:
        version = ", version='vjepa2_1'" if v21 else ""
        raise CheckpointError(
            f"{source}: cannot infer EncoderConfig.num_heads (nor img_size, num_frames) from the shapes of a "
            f"width-{width} encoder; pass encoder_config=EncoderConfig(embed_dim={width}, depth={depth}, "
            f"num_heads=...{version}, ...) (or vjepa_fast.models.configs_from_meta(...) for Meta's "
            f"hyper-parameters)"
        )
    heads, _ = known[width]
    extra: dict[str, Any] = {}
    if v21:
        extra = {"img_size": 384, "num_frames": 64, "interpolate_rope": True,
                 "modality_embedding": found["modality_embedding"], "image_patch_embed": found["image_patch_embed"]}
    return EncoderConfig(
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        mlp_ratio=_mlp_ratio(hidden, width),
        patch_size=patch,
        tubelet_size=tubelet,
        in_chans=in_chans,
        attn_impl=attn_impl or "sdpa",
        version=found["version"],
        **extra,
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
    attn_impl: str | None = None,
    source: str = "predictor",
) -> PredictorConfig | ACPredictorConfig:
    """PredictorConfig or ACPredictorConfig (chosen by the keys) of a cleaned predictor state dict.

    Grid fields (img_size, num_frames, ...) come from `encoder`; head counts are known for the released
    widths (384 -> 12 heads, AC 1024 -> 16); anything else needs `given`.
    """
    is_ac = "action_encoder.weight" in sd
    cls: type[PredictorConfig] | type[ACPredictorConfig] = ACPredictorConfig if is_ac else PredictorConfig
    v21 = not is_ac and (encoder.is_v21 or is_v21_predictor(sd))
    if v21 and "predictor_embed.0.weight" in sd:  # MLP input projection: Linear(L*D, D), GELU, Linear(D, P)
        first = sd["predictor_embed.0.weight"]
        width = first.shape[0]
        levels = first.shape[1] // width
        dim = _need(sd, "predictor_embed.2.weight", source).shape[0]
    else:
        embed = _need(sd, "predictor_embed.weight", source)
        dim, width = embed.shape
        levels = 1
    depth = _count(sd, r"predictor_blocks\.(\d+)\.norm1\.weight")
    hidden = _need(sd, "predictor_blocks.0.mlp.fc1.weight", source).shape[0]
    found: dict[str, Any] = {"embed_dim": width, "predictor_embed_dim": dim, "depth": depth}
    if is_ac:
        found["action_dim"] = sd["action_encoder.weight"].shape[1]
    else:
        found["num_mask_tokens"] = _count(sd, r"mask_tokens\.(\d+)")
        found["version"] = VJEPA2_1 if v21 else VJEPA2
    shape_fields: dict[str, Any] = {}
    if v21:
        found["modality_embedding"] = "video_mod_embed" in sd
        found["context_head"] = "predictor_proj_context.weight" in sd
        out = _need(sd, "predictor_proj.weight", source).shape[0] // levels
        # Fully determined by the shapes: the distilled B/L form (1 level, teacher width) or the full one.
        shape_fields = {"num_levels": levels, "out_embed_dim": None if out == width else out}
    if given is not None:
        if not isinstance(given, cls):
            kind = "an action-conditioned" if is_ac else "a masked"
            raise CheckpointError(
                f"{source} holds {kind} predictor; predictor_config must be a {cls.__name__}, "
                f"got {type(given).__name__}"
            )
        _check_given(given, found, source, "predictor_config")
        if shape_fields and any(getattr(given, k) != v for k, v in shape_fields.items()):
            _LOG.info("%s: a %s-level predictor with %s outputs per level (predictor_config said %s / %s)",
                      source, levels, shape_fields["out_embed_dim"] or width, given.num_levels,
                      given.out_embed_dim)
            given = given.replace(**shape_fields)
        if int(given.predictor_embed_dim * given.mlp_ratio) != hidden:
            raise CheckpointError(
                f"{source}: predictor_config gives MLP ratio {given.mlp_ratio}, the file has hidden {hidden}"
            )
        return given.replace(attn_impl=attn_impl) if attn_impl not in (None, given.attn_impl) else given
    heads = (_KNOWN_AC_HEADS if is_ac else _KNOWN_PREDICTOR_HEADS).get(dim)
    known_encoders = _KNOWN_V21_ENCODERS if v21 else _KNOWN_ENCODERS
    if heads is None or encoder.embed_dim not in known_encoders:
        raise CheckpointError(
            f"{source}: cannot infer {cls.__name__}.num_heads (nor img_size, num_frames) from the shapes of a "
            f"width-{dim} predictor over a width-{width} encoder; pass predictor_config={cls.__name__}(...)"
        )
    return cls(
        **found,
        **shape_fields,
        num_heads=heads,
        mlp_ratio=_mlp_ratio(hidden, dim),
        attn_impl=attn_impl or encoder.attn_impl,
        **_grid_fields(encoder),
    )


# --------------------------------------------------------------------------------------- building the models


def _build_models(
    enc_sd: Mapping[str, torch.Tensor] | None,
    pred_sd: Mapping[str, torch.Tensor] | None,
    *,
    encoder_config: EncoderConfig | None,
    predictor_config: PredictorConfig | ACPredictorConfig | None,
    attn_impl: str | None,
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
    if isinstance(pred_cfg, PredictorConfig) and pred_cfg.is_v21 != enc_cfg.is_v21:
        raise CheckpointError(f"{pred_source}: a {pred_cfg.version} predictor with a {enc_cfg.version} encoder")
    if isinstance(pred_cfg, ACPredictorConfig):
        return OfficialModels(encoder, _build(ActionConditionedPredictor, pred_cfg, pred_sd, pred_source), "ac")
    return OfficialModels(encoder, _build(MaskedPredictor, pred_cfg, pred_sd, pred_source), "masked")

