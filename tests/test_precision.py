"""Compute dtype by capability ("auto"), the forced AVX2-only fallback, and the private-op gate."""

from __future__ import annotations

import logging

import pytest
import torch

from vjepa_fast import precision
from vjepa_fast.models import ACPredictorConfig, ActionConditionedPredictor
from vjepa_fast.planning import PlannerConfig, WorldModel
from vjepa_fast.planning.rollout import LeanACRollout
from vjepa_fast.precision import (
    amp_dtype, force_cpu_fallback, native_bf16, private_cpu_ops_ok, resolve_dtype,
)
from vjepa_fast.robotics.pose import rollout_states


@pytest.fixture
def fresh():
    """Forget what was logged, and restore the fallback switch afterwards."""
    precision._said.clear()
    yield
    force_cpu_fallback(None)
    precision._said.clear()


def _has_native_bf16_hw() -> bool:
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def test_auto_follows_the_cpu_and_is_logged_once(fresh, caplog):
    force_cpu_fallback(False)
    with caplog.at_level(logging.INFO, logger="vjepa_fast.precision"):
        got = resolve_dtype("auto", "cpu", what="test rollout")
        resolve_dtype("auto", "cpu", what="test rollout")
    expect = torch.bfloat16 if _has_native_bf16_hw() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else torch.float32
    assert got == expect and native_bf16("cpu") == (expect == torch.bfloat16)
    lines = [r.getMessage() for r in caplog.records if "test rollout" in r.getMessage()]
    assert len(lines) == 1 and str(expect).split(".")[1] in lines[0]


def test_forced_fallback_picks_fp32_and_warns_on_explicit_bf16(fresh, caplog):
    force_cpu_fallback(True)
    assert not native_bf16("cpu") and not private_cpu_ops_ok(torch.float32)
    assert not private_cpu_ops_ok(torch.bfloat16)
    with caplog.at_level(logging.INFO, logger="vjepa_fast.precision"):
        assert resolve_dtype("auto", "cpu", what="x") == torch.float32
    assert "VJEPA_FAST_CPU_FALLBACK" in caplog.text
    with pytest.warns(RuntimeWarning, match="without native bf16"):
        assert resolve_dtype("bfloat16", "cpu", what="y") == torch.bfloat16
    assert resolve_dtype("float32", "cpu") == torch.float32 and resolve_dtype(torch.float16) == torch.float16


def test_environment_variable_forces_the_fallback(fresh, monkeypatch):
    monkeypatch.setenv("VJEPA_FAST_CPU_FALLBACK", "1")
    assert precision.cpu_fallback_forced() and not native_bf16("cpu")
    monkeypatch.setenv("VJEPA_FAST_CPU_FALLBACK", "0")
    assert not precision.cpu_fallback_forced()


def test_bad_dtypes_name_the_choice(fresh):
    with pytest.raises(ValueError, match="planner rollout dtype must be 'auto' or one of"):
        resolve_dtype("fp8", "cpu", what="planner rollout")
    with pytest.raises(ValueError, match="one of"):
        resolve_dtype(torch.int8)
    with pytest.raises(ValueError, match="PlannerConfig.dtype must be 'auto'"):
        PlannerConfig(dtype="bf16")
    with pytest.raises(ValueError, match="amp must be one of"):
        amp_dtype("fp16", "cpu")


def test_amp_settings(fresh):
    force_cpu_fallback(True)
    assert amp_dtype("auto", "cpu") is None and amp_dtype("none", "cpu") is None
    with pytest.warns(RuntimeWarning):
        assert amp_dtype("bf16", "cpu") == torch.bfloat16
    force_cpu_fallback(False)
    assert amp_dtype("auto", "cpu") == (torch.bfloat16 if native_bf16("cpu") else None)


def test_world_model_default_is_auto(fresh):
    pred = ActionConditionedPredictor(ACPredictorConfig.tiny())
    force_cpu_fallback(True)
    assert WorldModel(None, pred).dtype == torch.float32
    force_cpu_fallback(False)
    assert WorldModel(None, pred).dtype == (torch.bfloat16 if native_bf16("cpu") else torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_lean_rollout_public_path_equals_private_path(fresh, dtype):
    """The private oneDNN linears (fused epilogues) and the public F.linear path are the same maths: fp32 to
    rounding; bf16 within twice the private path's own bf16 error against fp32 (STYLE.md's rule)."""
    force_cpu_fallback(False)
    if not private_cpu_ops_ok(dtype):
        pytest.skip(f"no private oneDNN {dtype} linear on this CPU: only the public path runs here")
    torch.manual_seed(0)
    pred = ActionConditionedPredictor(ACPredictorConfig.tiny()).eval()
    n, d = pred.config.tokens_per_frame, pred.config.embed_dim
    z0 = torch.nn.functional.layer_norm(torch.randn(2, n, d), (d,))
    actions = 0.05 * torch.randn(2 * 6, 2, 7, generator=torch.Generator().manual_seed(1))
    states = rollout_states(torch.zeros(2 * 6, 1, 7), actions[:, None])[:, 0, :2]
    private = LeanACRollout(pred, dtype)
    assert private._fused_ok(torch.device("cpu"))
    out_private = private(z0, actions, states, return_all=True).float()
    force_cpu_fallback(True)
    public = LeanACRollout(pred, dtype)
    assert not public._fused_ok(torch.device("cpu"))
    out_public = public(z0, actions, states, return_all=True).float()
    if dtype == torch.float32:
        torch.testing.assert_close(out_public, out_private, rtol=1e-5, atol=1e-5)
    else:
        exact = LeanACRollout(pred, torch.float32)(z0, actions, states, return_all=True)
        err_private = (out_private - exact).abs()
        err_public = (out_public - exact).abs()
        assert err_public.max() <= 2 * err_private.max() and err_public.mean() <= 2 * err_private.mean()
