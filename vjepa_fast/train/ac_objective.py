"""The V-JEPA 2-AC training objective (SPEC section 5), bit-compatible with Meta's droid training step
(checked on the shared fixture, tests/test_train_ac.py):

    h = normalised frame latents [B, T*N, D] (the latent cache stores layer_norm(encoder(frame)), no affine)
    teacher forcing: tf_z = LN(P(h[:, :-N], a[:, :T-1], s[:, :T-1]))     predicts frames 1..T-1
    rollout:         z = [h_0, tf_z_1]; for k = 2..R: z += LN(P(z, a[:, :k], s[:, :k]))[last frame]
    tf_loss = mean|tf_z - h[:, N:]|,  ar_loss = mean|z[:, N:] - h[:, N:(R+1)N]|,  loss = tf_loss + ar_loss
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vjepa_fast.constants import TARGET_LN_EPS

__all__ = ["ac_forward", "ac_losses"]


def _ln(z: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(z, (z.size(-1),), eps=TARGET_LN_EPS)


def _check_batch(latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, n: int) -> int:
    if latents.dim() != 3 or latents.shape[1] % n:
        raise ValueError(f"latents must be [B, T*N, D] with N = {n}, got {tuple(latents.shape)}")
    t = latents.shape[1] // n
    if t < 2:
        raise ValueError(f"need at least 2 frames per clip, got {t}")
    b = latents.shape[0]
    if actions.dim() != 3 or tuple(actions.shape[:2]) != (b, t - 1):
        raise ValueError(f"actions must be [B, T-1, A] = [{b}, {t - 1}, A], got {tuple(actions.shape)}")
    if states.dim() != 3 or tuple(states.shape[:2]) not in ((b, t), (b, t - 1)):
        raise ValueError(f"states must be [B, T, A] = [{b}, {t}, A], got {tuple(states.shape)}")
    return t


def ac_forward(
    predictor: nn.Module, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, rollout_steps: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced and autoregressive predictions of the droid training step.

    latents: [B, T*N, D] normalised frame latents (t-major); actions: [B, T-1, 7]; states: [B, T, 7]
    (the last state is unused). rollout_steps R (clamped to T-1).
    Returns tf_z [B, (T-1)*N, D] (predictions of frames 1..T-1) and ar_z [B, R*N, D] (frames 1..R).
    """
    n = _unwrap(predictor).config.tokens_per_frame
    t = _check_batch(latents, actions, states, n)
    r = max(1, min(int(rollout_steps), t - 1))
    tf_z = _ln(predictor(latents[:, :-n], actions, states[:, : t - 1]))
    z = torch.cat([latents[:, :n], tf_z[:, :n]], dim=1)
    for k in range(2, r + 1):
        nxt = _ln(predictor(z, actions[:, :k], states[:, :k]))[:, -n:]
        z = torch.cat([z, nxt], dim=1)
    return tf_z, z[:, n:]


def ac_losses(
    predictor: nn.Module, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, rollout_steps: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tf_loss, ar_loss): L1 of `ac_forward`'s predictions against the normalised latents (loss exp 1).

    latents [B, T*N, D], actions [B, T-1, 7], states [B, T, 7]; the training loss is their sum.
    """
    n = _unwrap(predictor).config.tokens_per_frame
    tf_z, ar_z = ac_forward(predictor, latents, actions, states, rollout_steps)
    tf_loss = (tf_z - latents[:, n:]).abs().mean()
    ar_loss = (ar_z - latents[:, n : n + ar_z.shape[1]]).abs().mean()
    return tf_loss, ar_loss


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
