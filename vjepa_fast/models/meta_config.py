"""Meta's V-JEPA 2.1 hyper-parameters (the keyword arguments of its model factories) -> our typed configs.

`configs_from_meta(config)` reads the `config` dict stored in the 2.1 fixtures (the same schema in every
fixture: `encoder_kwargs`, `encoder_class_defaults_in_effect`, `predictor_kwargs`, `dist_predictor_kwargs`),
which lists the arguments given to `app.vjepa_2_1.models.vision_transformer.VisionTransformer` and to
`app.vjepa_2_1.models.predictor.vit_predictor`, plus the class defaults in effect. Flags whose paths we do
not implement (SwiGLU, registers, a CLS token, causal attention, absolute position embeddings) are refused
with a ValueError naming them rather than built into a model that would compute something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from vjepa_fast.models.config import V21_LEVELS, VJEPA2_1, EncoderConfig
from vjepa_fast.models.predictor_config import PredictorConfig


class MetaConfigs(NamedTuple):
    """What `configs_from_meta` returns: unpacks as `encoder, predictor = configs_from_meta(config)`."""

    encoder: EncoderConfig
    predictor: PredictorConfig


def _section(config: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = config.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"configs_from_meta: config[{key!r}] must be a dict of Meta's keyword arguments, "
                         f"got {type(value).__name__} (keys present: {sorted(config)})")
    return value


def _img_size(value: Any, where: str) -> int | tuple[int, int]:
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value[0] if value[0] == value[1] else (int(value[0]), int(value[1]))
    raise ValueError(f"configs_from_meta: {where}['img_size'] must be an int or [H, W], got {value!r}")


def _refuse(flags: Mapping[str, Any], where: str, unsupported: Mapping[str, Any]) -> None:
    """Raise naming every flag whose value selects a path we do not implement."""
    bad = {k: flags[k] for k, ok in unsupported.items() if k in flags and flags[k] != ok}
    if bad:
        raise ValueError(f"configs_from_meta: {where} sets {bad}, which vjepa_fast does not implement "
                         f"(supported: {dict(unsupported)})")


def _need(kw: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in kw:
        raise ValueError(f"configs_from_meta: {where} has no {key!r}")
    return kw[key]


def _image_flag(value: Any, where: str) -> bool:
    if value is None:
        return False
    if value != 1:
        raise ValueError(f"configs_from_meta: {where}['img_temporal_dim_size'] must be None or 1, got {value!r}")
    return True


def configs_from_meta(config: Mapping[str, Any], *, distilled: bool = False,
                      attn_impl: str = "sdpa") -> MetaConfigs:
    """Our V-JEPA 2.1 EncoderConfig and PredictorConfig from Meta's hyper-parameters.

    config: the fixtures' `config` dict (`encoder_kwargs`, `encoder_class_defaults_in_effect`,
        `predictor_kwargs`, and `dist_predictor_kwargs` for `distilled=True`).
    distilled: build the distilled-style predictor (the hub's B/L form, one level and the teacher's width)
        from `dist_predictor_kwargs` instead of `predictor_kwargs`.
    Returns (encoder, predictor) configs, usable as `load_official(path, encoder_config=...,
    predictor_config=...)`.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"configs_from_meta: config must be a dict, got {type(config).__name__}")
    ek = _section(config, "encoder_kwargs")
    defaults = config.get("encoder_class_defaults_in_effect") or {}
    if not isinstance(defaults, Mapping):
        raise ValueError("configs_from_meta: config['encoder_class_defaults_in_effect'] must be a dict")
    enc_flags = {**defaults, **ek}
    where = "encoder_kwargs"
    _refuse(enc_flags, where, {"use_rope": True, "use_SiLU": False, "use_silu": False, "n_registers": 0,
                               "has_cls_first": False, "is_causal": False, "handle_nonsquare_inputs": True,
                               "qkv_bias": True})
    norm = enc_flags.get("norm_layer", "")
    if isinstance(norm, str) and norm and "1e-6" not in norm and "1e-06" not in norm:
        raise ValueError(f"configs_from_meta: {where}['norm_layer'] = {norm!r}; only LayerNorm eps 1e-6 is built")
    img_size = _img_size(_need(ek, "img_size", where), where)
    encoder = EncoderConfig(
        embed_dim=int(_need(ek, "embed_dim", where)),
        depth=int(_need(ek, "depth", where)),
        num_heads=int(_need(ek, "num_heads", where)),
        mlp_ratio=float(enc_flags.get("mlp_ratio", 4.0)),
        img_size=img_size,
        patch_size=int(_need(ek, "patch_size", where)),
        num_frames=int(enc_flags.get("num_frames", 1)),
        tubelet_size=int(enc_flags.get("tubelet_size", 2)),
        in_chans=int(enc_flags.get("in_chans", 3)),
        attn_impl=attn_impl,
        version=VJEPA2_1,
        interpolate_rope=bool(enc_flags.get("interpolate_rope", False)),
        modality_embedding=bool(enc_flags.get("modality_embedding", True)),
        image_patch_embed=_image_flag(enc_flags.get("img_temporal_dim_size"), where),
        n_output_distillation=int(enc_flags.get("n_output_distillation", V21_LEVELS)),
    )

    where = "dist_predictor_kwargs" if distilled else "predictor_kwargs"
    pk = _section(config, where)
    _refuse(pk, where, {"use_rope": True, "use_silu": False, "use_mask_tokens": True, "n_registers": 0,
                        "has_cls_first": False, "is_causal": False, "chop_last_n_tokens": 0, "qkv_bias": True})
    levels = min(int(pk.get("n_output_distillation", V21_LEVELS)), V21_LEVELS)
    out = pk.get("out_embed_dim")
    if out is None and pk.get("teacher_embed_dim") is not None:
        out = int(pk["teacher_embed_dim"]) // levels
    width = int(_need(pk, "embed_dim", where))
    predictor = PredictorConfig(
        embed_dim=width,
        predictor_embed_dim=int(_need(pk, "predictor_embed_dim", where)),
        depth=int(_need(pk, "depth", where)),
        num_heads=int(_need(pk, "num_heads", where)),
        num_mask_tokens=int(pk.get("num_mask_tokens", 2)),
        img_size=_img_size(_need(pk, "img_size", where), where),
        patch_size=int(_need(pk, "patch_size", where)),
        num_frames=int(pk.get("num_frames", 1)),
        tubelet_size=int(pk.get("tubelet_size", 2)),
        attn_impl=attn_impl,
        mlp_ratio=float(pk.get("mlp_ratio", 4.0)),
        version=VJEPA2_1,
        num_levels=levels,
        out_embed_dim=None if out is None or int(out) == width else int(out),
        modality_embedding=_image_flag(pk.get("img_temporal_dim_size"), where) and bool(pk.get("modality_embedding",
                                                                                                True)),
        context_head=bool(pk.get("return_all_tokens", False)),
        interpolate_rope=bool(pk.get("interpolate_rope", False)),
    )
    return MetaConfigs(encoder, predictor)
