"""Checkpoints: official files, shape inference for the real sizes, HF layout, our safetensors format,
and a clear error for every kind of bad file."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from vjepa_fast import load_official
from vjepa_fast.checkpoints import (
    CheckpointError,
    OfficialModels,
    from_hf_state_dict,
    infer_encoder_config,
    infer_predictor_config,
    load_safetensors,
    save_safetensors,
    to_hf_state_dict,
)
from vjepa_fast.models import (
    ACPredictorConfig,
    ActionConditionedPredictor,
    EncoderConfig,
    MaskedPredictor,
    PredictorConfig,
    VideoEncoder,
)

torch.set_num_threads(2)

TINY = dict(encoder_config=EncoderConfig.tiny(), predictor_config=PredictorConfig.tiny())
AC_TINY = dict(encoder_config=EncoderConfig.tiny(depth=1, num_frames=8), predictor_config=ACPredictorConfig.tiny())


def _meta_state_dict(fixtures_dir: Path, name: str, prefix: str = "") -> dict[str, torch.Tensor]:
    manifest = json.loads((fixtures_dir / "official_keys.json").read_text())[name]["state_dict"]
    return {prefix + k: torch.empty(shape, device="meta") for k, shape in manifest.items()}


# ------------------------------------------------------------------------------------ official files


def test_load_official_kinds(fixtures_dir):
    m = load_official(fixtures_dir / "official_tiny.pt", **TINY)
    assert isinstance(m, OfficialModels) and m.kind == "masked"
    assert isinstance(m.encoder, VideoEncoder) and isinstance(m.predictor, MaskedPredictor)
    ac = load_official(fixtures_dir / "official_ac_tiny.pt", **AC_TINY)
    assert ac.kind == "ac" and isinstance(ac.predictor, ActionConditionedPredictor)
    # The AC file has no target_encoder: the default key falls back to its (frozen) encoder.
    ac2 = load_official(fixtures_dir / "official_ac_tiny.pt", encoder_key="encoder", **AC_TINY)
    for a, b in zip(ac.encoder.parameters(), ac2.encoder.parameters()):
        assert torch.equal(a, b)


def test_missing_config_field_is_named(fixtures_dir):
    with pytest.raises(CheckpointError, match=r"EncoderConfig\.num_heads.*width-96"):
        load_official(fixtures_dir / "official_tiny.pt")
    with pytest.raises(CheckpointError, match=r"PredictorConfig\.num_heads"):
        load_official(fixtures_dir / "official_tiny.pt", encoder_config=EncoderConfig.tiny())
    with pytest.raises(CheckpointError, match=r"ACPredictorConfig\.num_heads"):
        load_official(fixtures_dir / "official_ac_tiny.pt", encoder_config=AC_TINY["encoder_config"])


def test_wrong_preset_and_kind(fixtures_dir):
    path = fixtures_dir / "official_tiny.pt"
    with pytest.raises(CheckpointError, match=r"official_tiny.pt.*embed_dim=1024 but the file has 96"):
        load_official(path, encoder_config=EncoderConfig.vit_large(), predictor_config=PredictorConfig.tiny())
    with pytest.raises(CheckpointError, match="depth=3 but the file has 2"):
        load_official(path, encoder_config=EncoderConfig.tiny(depth=3), predictor_config=PredictorConfig.tiny())
    with pytest.raises(CheckpointError, match="must be a PredictorConfig"):
        load_official(path, encoder_config=EncoderConfig.tiny(), predictor_config=ACPredictorConfig.tiny())
    with pytest.raises(CheckpointError, match="num_mask_tokens=8 but the file has 10"):
        load_official(
            path, encoder_config=EncoderConfig.tiny(), predictor_config=PredictorConfig.tiny(num_mask_tokens=8)
        )
    with pytest.raises(ValueError, match="encoder_key"):
        load_official(path, encoder_key="ema", **TINY)


def test_pos_embed_ignored_and_prefixes(tmp_path, fixtures_dir):
    ckpt = torch.load(fixtures_dir / "official_tiny.pt", weights_only=True)
    enc = dict(ckpt["target_encoder"])
    enc["module.backbone.pos_embed"] = torch.zeros(1, 32, 96)
    path = tmp_path / "with_pos.pt"
    torch.save({"target_encoder": enc, "opt": {"lr": 1.0}, "epoch": 3}, path)
    m = load_official(path, encoder_config=EncoderConfig.tiny())
    assert m.kind == "encoder" and m.predictor is None


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


class _Payload:
    """Pickles as a call to a (harmless) function: what weights_only must refuse."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_bad_files(tmp_path, fixtures_dir):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_official(tmp_path / "nope.pt")

    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    rnd = _bad(tmp_path, "random.pt", noise.numpy().tobytes())
    with pytest.raises(CheckpointError, match="random.pt: not a readable PyTorch checkpoint"):
        load_official(rnd)

    full = (fixtures_dir / "official_tiny.pt").read_bytes()
    trunc = _bad(tmp_path, "truncated.pt", full[: len(full) // 2])
    with pytest.raises(CheckpointError, match="truncated.pt: not a readable PyTorch checkpoint"):
        load_official(trunc)

    code = tmp_path / "code.pt"
    torch.save({"encoder": _Payload()}, code)
    with pytest.raises(CheckpointError, match=r"code.pt: refused by torch.load\(weights_only=True\).*GLOBAL .*getcwd"):
        load_official(code)
    raw = _bad(tmp_path, "raw.pkl", pickle.dumps({"encoder": _Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match=r"raw.pkl: refused by torch.load\(weights_only=True\)"):
        load_official(raw)

    tensor_only = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(CheckpointError, match="tensor.pt: top level is a Tensor"):
        load_official(tensor_only)

    no_encoder = tmp_path / "no_encoder.pt"
    torch.save({"epoch": 1}, no_encoder)
    with pytest.raises(CheckpointError, match=r"no 'target_encoder' entry; top-level keys are \['epoch'\]"):
        load_official(no_encoder)


def test_wrong_shapes_and_keys(tmp_path, fixtures_dir):
    ckpt = torch.load(fixtures_dir / "official_tiny.pt", weights_only=True)
    enc = dict(ckpt["target_encoder"])
    enc["module.backbone.blocks.1.mlp.fc2.bias"] = torch.zeros(95)
    path = tmp_path / "shapes.pt"
    torch.save({"target_encoder": enc}, path)
    expected = r"shapes.pt.*wrong shapes \[blocks.1.mlp.fc2.bias: file \(95,\) vs model \(96,\)\]"
    with pytest.raises(CheckpointError, match=expected):
        load_official(path, encoder_config=EncoderConfig.tiny())

    enc = dict(ckpt["target_encoder"])
    del enc["module.backbone.norm.bias"]
    enc["module.backbone.extra.weight"] = torch.zeros(1)
    torch.save({"target_encoder": enc}, path)
    with pytest.raises(CheckpointError, match=r"missing keys \['norm.bias'\].*unexpected keys \['extra.weight'\]"):
        load_official(path, encoder_config=EncoderConfig.tiny())


# ------------------------------------------------------------------------------ real-size inference


@pytest.mark.parametrize("name", ["vit_large", "vit_huge", "vit_giant"])
def test_infer_real_sizes(fixtures_dir, name):
    preset = name
    enc_sd = _meta_state_dict(fixtures_dir, f"vjepa2_{name}.encoder")
    enc_cfg = infer_encoder_config(enc_sd)
    assert enc_cfg == getattr(EncoderConfig, preset)()
    pred_cfg = infer_predictor_config(_meta_state_dict(fixtures_dir, f"vjepa2_{name}.predictor"), enc_cfg)
    assert pred_cfg == getattr(PredictorConfig, preset)()
    if name == "vit_giant":
        ac_cfg = infer_predictor_config(_meta_state_dict(fixtures_dir, "vjepa2_ac_vit_giant.predictor"), enc_cfg)
        assert ac_cfg == ACPredictorConfig.vit_giant()


def test_real_size_meta_checkpoint_loads(tmp_path, fixtures_dir):
    """A ViT-L file in the official layout (meta tensors: no weights materialised) loads strictly."""
    from vjepa_fast.checkpoints import _build_models

    enc_sd = _meta_state_dict(fixtures_dir, "vjepa2_vit_large.encoder")
    pred_sd = _meta_state_dict(fixtures_dir, "vjepa2_vit_large.predictor")
    m = _build_models(enc_sd, pred_sd, encoder_config=None, predictor_config=None, attn_impl="sdpa",
                      enc_source="enc", pred_source="pred")
    assert m.kind == "masked" and m.encoder.config.num_heads == 16 and m.predictor.config.num_heads == 12


# ------------------------------------------------------------------------------------- HF layout


def test_hf_state_dict_roundtrip(fixtures_dir):
    m = load_official(fixtures_dir / "official_tiny.pt", **TINY)
    hf = to_hf_state_dict(m.encoder, m.predictor)
    assert hf["encoder.layer.0.attention.query.weight"].shape == (96, 96)
    assert hf["predictor.embeddings.mask_tokens"].shape == (10, 1, 1, 64)
    back = from_hf_state_dict(hf, **TINY)
    for ours, theirs in ((m.encoder, back.encoder), (m.predictor, back.predictor)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    bad = dict(hf)
    del bad["encoder.layer.1.attention.key.bias"]
    with pytest.raises(CheckpointError, match="missing HF key 'encoder.layer.1.attention.key.bias'"):
        from_hf_state_dict(bad, **TINY)
    with pytest.raises(TypeError, match="no action-conditioned"):
        to_hf_state_dict(m.encoder, ActionConditionedPredictor(ACPredictorConfig.tiny()))


# ---------------------------------------------------------------------------------- safetensors


def test_safetensors_roundtrip(tmp_path, fixtures_dir):
    io = torch.load(fixtures_dir / "official_tiny_io.pt", weights_only=True)
    m = load_official(fixtures_dir / "official_tiny.pt", **TINY).eval()
    path = save_safetensors(tmp_path / "tiny.safetensors", m)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file
    r = load_safetensors(path).eval()
    assert r.kind == "masked" and r.encoder.config == m.encoder.config and r.predictor.config == m.predictor.config
    with torch.no_grad():
        torch.testing.assert_close(r.encoder(io["video"]), io["target_out"], atol=1e-4, rtol=1e-4)
        out = r.predictor(io["enc_masked"], io["masks_x"], io["masks_y"])
        torch.testing.assert_close(out, io["pred_out"], atol=1e-4, rtol=1e-4)

    ac = load_official(fixtures_dir / "official_ac_tiny.pt", **AC_TINY)
    save_safetensors(tmp_path / "ac.safetensors", {"encoder": ac.encoder, "predictor": ac.predictor})
    r = load_safetensors(tmp_path / "ac.safetensors", attn_impl="sdpa")
    assert r.kind == "ac" and isinstance(r.predictor, ActionConditionedPredictor)

    save_safetensors(tmp_path / "enc.safetensors", m.encoder, EncoderConfig.tiny())
    assert load_safetensors(tmp_path / "enc.safetensors").kind == "encoder"
    with pytest.raises(TypeError, match="EncoderConfig"):
        save_safetensors(tmp_path / "x.safetensors", m.encoder, PredictorConfig.tiny())


def test_safetensors_info(tmp_path):
    from vjepa_fast.checkpoints import safetensors_info

    enc = VideoEncoder(EncoderConfig.tiny())
    plain = save_safetensors(tmp_path / "plain.safetensors", enc)
    assert safetensors_info(plain) == {}
    info = {"camera": "front_right", "recipe": {"steps": 3, "episodes": ["a", "b"]}}
    path = save_safetensors(tmp_path / "info.safetensors", enc, info=info)
    assert safetensors_info(path) == info
    assert load_safetensors(path).kind == "encoder"  # the info does not get in the loader's way
    with pytest.raises(FileNotFoundError):
        safetensors_info(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        safetensors_info(tmp_path / "junk.safetensors")


def test_bad_safetensors(tmp_path, fixtures_dir):
    from safetensors.torch import save_file

    rnd = _bad(tmp_path, "random.safetensors", bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match="random.safetensors: not a readable safetensors file"):
        load_safetensors(rnd)
    m = load_official(fixtures_dir / "official_tiny.pt", **TINY)
    good = save_safetensors(tmp_path / "good.safetensors", m.encoder).read_bytes()
    trunc = _bad(tmp_path, "trunc.safetensors", good[: len(good) - 1000])
    with pytest.raises(CheckpointError, match="trunc.safetensors: not a readable safetensors file"):
        load_safetensors(trunc)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="foreign.safetensors: not a vjepa_fast safetensors file"):
        load_safetensors(foreign)
    # Config metadata that does not match the tensors: the strict loader names the keys.
    save_file(
        {f"encoder.{k}": v.contiguous() for k, v in m.encoder.state_dict().items()},
        str(tmp_path / "mismatch.safetensors"),
        metadata={"vjepa_fast_format": "1", "encoder_config": json.dumps(EncoderConfig.tiny(depth=3).to_dict())},
    )
    with pytest.raises(CheckpointError, match=r"mismatch.safetensors \(encoder\).*missing keys \['blocks.2"):
        load_safetensors(tmp_path / "mismatch.safetensors")


def test_saved_safetensors_are_readable_by_others(tmp_path):
    """safetensors writes 0600; our export follows the umask like any other file (0644 under umask 022)."""
    import os

    from vjepa_fast.checkpoints import save_safetensors
    from vjepa_fast.models import EncoderConfig, VideoEncoder

    old = os.umask(0o022)
    try:
        save_safetensors(tmp_path / "e.safetensors", VideoEncoder(EncoderConfig.tiny()))
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "e.safetensors").st_mode & 0o777 == 0o644
