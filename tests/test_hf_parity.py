"""Parity with HF transformers' VJEPA2Model (random small config), weights converted both ways.

HF takes video as [B, T, C, H, W] and reads RoPE positions on the configured crop grid, so the inputs here
use the configured size. Its predictor takes the full encoder output plus context/target index lists and
uses mask token 1 (our default mask_index).
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vjepa_fast.checkpoints import (  # noqa: E402
    from_hf_state_dict,
    hf_config_dict,
    load_hf,
    save_hf,
    to_hf_state_dict,
)
from vjepa_fast.models import EncoderConfig, MaskedPredictor, PredictorConfig, VideoEncoder  # noqa: E402

torch.set_num_threads(2)
TOL = dict(atol=1e-4, rtol=1e-4)

ENC = EncoderConfig.tiny()
PRED = PredictorConfig.tiny()


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Noise on every parameter so zero-initialised ones (mask tokens, biases) matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def _hf_model():
    cfg = transformers.VJEPA2Config(**hf_config_dict(ENC, PRED))
    cfg._attn_implementation = "sdpa"
    return transformers.VJEPA2Model(cfg).eval()


def _inputs():
    g = torch.Generator().manual_seed(11)
    video = torch.randn(2, 3, 4, 64, 64, generator=g)
    perm = torch.stack([torch.randperm(32, generator=g) for _ in range(2)])
    ctx = perm[:, :12].sort(dim=1).values
    tgt = perm[:, 12:].sort(dim=1).values
    return video, ctx, tgt


@torch.no_grad()
def _compare(encoder: VideoEncoder, predictor: MaskedPredictor, hf) -> None:
    video, ctx, tgt = _inputs()
    out = hf(pixel_values_videos=video.permute(0, 2, 1, 3, 4), context_mask=[ctx], target_mask=[tgt])
    ours = encoder(video)
    torch.testing.assert_close(ours, out.last_hidden_state, **TOL)
    context = torch.gather(ours, 1, ctx.unsqueeze(-1).expand(-1, -1, ours.shape[-1]))
    pred = predictor(context, ctx, tgt, mask_index=1)
    torch.testing.assert_close(pred, out.predictor_output.last_hidden_state, **TOL)


def test_ours_to_hf():
    torch.manual_seed(0)
    enc, pred = VideoEncoder(ENC).eval(), MaskedPredictor(PRED).eval()
    _randomise(enc, 1)
    _randomise(pred, 2)
    hf = _hf_model()
    hf.load_state_dict(to_hf_state_dict(enc, pred), strict=True)
    _compare(enc, pred, hf)


def test_hf_to_ours():
    torch.manual_seed(0)
    hf = _hf_model()
    _randomise(hf, 3)
    m = from_hf_state_dict(hf.state_dict(), encoder_config=ENC, predictor_config=PRED).eval()
    _compare(m.encoder, m.predictor, hf)


def test_save_hf_folder_loads_in_transformers(tmp_path):
    torch.manual_seed(0)
    enc, pred = VideoEncoder(ENC).eval(), MaskedPredictor(PRED).eval()
    _randomise(enc, 4)
    _randomise(pred, 5)
    save_hf(tmp_path / "hf", enc, pred)
    hf = transformers.VJEPA2Model.from_pretrained(tmp_path / "hf", attn_implementation="sdpa").eval()
    _compare(enc, pred, hf)
    back = load_hf(tmp_path / "hf").eval()
    assert back.encoder.config == ENC and back.predictor.config == PRED
    _compare(back.encoder, back.predictor, hf)
