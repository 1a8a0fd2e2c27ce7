"""The world model a latent planner rolls out: frozen V-JEPA 2 encoder + action-conditioned predictor.

`WorldModel` encodes observation and goal images (each frame as a 2-frame clip, layer-normed without affine,
eps 1e-5: SPEC section 5) and rolls out candidate action sequences autoregressively with a KV cache, so each
horizon step runs the predictor on the new time step only (the reference recomputes the whole frame history
each step). The 7-D end-effector state of every sample is advanced in batched torch (`robotics.pose`).

Anything with `latent_shape` and `rollout` (the `PlanningModel` protocol) can be planned on by `CEMPlanner`,
e.g. a hand-made model with known dynamics in the tests.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjepa_fast.models import ACKVCache, ActionConditionedPredictor, VideoEncoder
from vjepa_fast.planning.rollout import LeanACRollout
from vjepa_fast import precision
from vjepa_fast.precision import resolve_dtype
from vjepa_fast.robotics.pose import ACTION_DIM, STATE_DIM, rollout_states

__all__ = ["PlanningModel", "WorldModel", "TARGET_LN_EPS", "check_rollout_inputs"]

# Encoder outputs are normalised with F.layer_norm's default eps, as in the reference world model.
from vjepa_fast.constants import TARGET_LN_EPS  # noqa: E402



def as_dtype(dtype: torch.dtype | str, device: torch.device | str = "cpu", *, what: str = "compute") -> torch.dtype:
    """torch dtype from a dtype, one of "bfloat16" / "float32" / "float16", or "auto" (bf16 where `device` does
    it natively, else fp32: `vjepa_fast.precision.resolve_dtype`)."""
    return resolve_dtype(dtype, device, what=what)


def check_dtype_name(name: str, what: str) -> None:
    """ValueError unless `name` is "auto" or a dtype name `as_dtype` accepts (checked without a device)."""
    precision.check_dtype_name(name, what)


@runtime_checkable
class PlanningModel(Protocol):
    """What `CEMPlanner` needs from a world model.

    latent_shape: (N, D), the latent of one frame (tokens, channels).
    rollout(z0, state, actions): z0 [B, N, D] context latents, state [B, 7] current end-effector state,
        actions [B, S, H, 7] S candidate sequences of H actions per problem -> [B, S, N, D] float32, the
        latent predicted after the last action of each sequence (normalised like the goal latents).
    """

    latent_shape: tuple[int, int]

    def rollout(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...


def check_rollout_inputs(
    latent_shape: tuple[int, int], z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor
) -> None:
    """Shape/dtype checks shared by the world models (ValueError/TypeError naming the argument)."""
    n, d = latent_shape
    for name, t in (("z0", z0), ("state", state), ("actions", actions)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a float tensor, got {t.dtype}")
    if z0.dim() != 3 or tuple(z0.shape[1:]) != (n, d):
        raise ValueError(f"z0 must be [B, N, D] = [B, {n}, {d}] latents, got shape {tuple(z0.shape)}")
    b = z0.shape[0]
    if tuple(state.shape) != (b, STATE_DIM):
        raise ValueError(f"state must be [B, {STATE_DIM}] = [{b}, {STATE_DIM}], got shape {tuple(state.shape)}")
    if actions.dim() != 4 or actions.shape[0] != b or actions.shape[-1] != ACTION_DIM:
        raise ValueError(f"actions must be [B, S, H, {ACTION_DIM}] with B = {b}, got shape {tuple(actions.shape)}")
    if actions.shape[1] < 1 or actions.shape[2] < 1:
        raise ValueError(f"actions need at least one sample and one step, got shape {tuple(actions.shape)}")


class WorldModel(nn.Module):
    """Frozen encoder + AC predictor with a KV-cached autoregressive rollout.

    Args:
        encoder: the frozen video encoder (its output width must be the predictor's `embed_dim`).
        predictor: the action-conditioned predictor.
        dtype: compute dtype of the rollout: "auto" (default: bf16 where the predictor's device does bf16
            natively, a GPU or a CPU with AMX / AVX512_BF16; fp32 elsewhere, e.g. on an AVX2-only CPU where
            bf16 is ~7x slower), "bfloat16", "float32" or a torch dtype. The predictor is copied once in that
            dtype; energies and the layer norms between steps are fp32.
        encoder_dtype: compute dtype of the encoder (default float32: it runs twice per plan, not per sample).
        gripper_range: clamp of the gripper state when states are advanced (None: no clamp).
        chunk_samples: if set, the rollout runs at most this many sequences (B * S) at once (bounds memory at
            the paper's scale; results do not depend on it).
        impl: "lean" (default: `planning.rollout.LeanACRollout`, the same maths with fewer memory passes) or
            "module" (the predictor's own forward with an `ACKVCache`: the plain way, kept to check "lean").
    """

    def __init__(
        self,
        encoder: VideoEncoder | None,
        predictor: ActionConditionedPredictor,
        *,
        dtype: torch.dtype | str = "auto",
        encoder_dtype: torch.dtype | str = "float32",
        gripper_range: tuple[float, float] | None = (0.0, 1.0),
        chunk_samples: int | None = None,
        impl: str = "lean",
    ) -> None:
        super().__init__()
        if encoder is not None and not isinstance(encoder, VideoEncoder):
            raise TypeError(f"encoder must be a VideoEncoder (or None), got {type(encoder).__name__}")
        if not isinstance(predictor, ActionConditionedPredictor):
            raise TypeError(f"predictor must be an ActionConditionedPredictor, got {type(predictor).__name__}")
        pcfg = predictor.config
        if encoder is not None and encoder.config.embed_dim != pcfg.embed_dim:
            raise ValueError(
                f"encoder width {encoder.config.embed_dim} != predictor embed_dim {pcfg.embed_dim}: "
                "they are not a matching pair"
            )
        if pcfg.action_dim != ACTION_DIM:
            raise ValueError(f"the planner needs a {ACTION_DIM}-D action predictor, got action_dim {pcfg.action_dim}")
        if pcfg.max_steps < 1:
            raise ValueError("the predictor accepts no time step (num_frames < tubelet_size)")
        if chunk_samples is not None and (not isinstance(chunk_samples, int) or chunk_samples < 1):
            raise ValueError(f"chunk_samples must be None or a positive int, got {chunk_samples!r}")
        if impl not in ("lean", "module"):
            raise ValueError(f"impl must be 'lean' or 'module', got {impl!r}")
        self.impl = impl
        pdev = predictor.predictor_embed.weight.device
        self.dtype = as_dtype(dtype, pdev, what="planner rollout")
        edev = pdev if encoder is None else next(encoder.parameters()).device
        self.encoder_dtype = as_dtype(encoder_dtype, edev, what="planner encoder")
        self.gripper_range = gripper_range
        self.chunk_samples = chunk_samples
        # Frozen copies in the compute dtypes (the originals are left untouched for the caller).
        self.encoder = None if encoder is None else _frozen_copy(encoder, self.encoder_dtype)
        self.predictor = _frozen_copy(predictor, self.dtype)
        self._lean = LeanACRollout(self.predictor, self.dtype) if impl == "lean" else None
        self.latent_shape = (pcfg.tokens_per_frame, pcfg.embed_dim)

    def with_dtype(self, dtype: torch.dtype | str) -> WorldModel:
        """This world model's predictor in another compute dtype (no encoder: rollouts only), e.g. the bf16
        "coarse" model of `PlannerConfig.coarse_iterations`. Returns self when the dtype is already this one.
        Only to an equal or narrower dtype: the copy is made from this model's weights, in its dtype. "auto" is
        bf16 where the device does it natively, else this model's dtype (then self is returned)."""
        dt = as_dtype(dtype, self.predictor.predictor_embed.weight.device, what="planner coarse rollout")
        if dt == self.dtype:
            return self
        if dt.itemsize > self.dtype.itemsize:
            raise ValueError(f"with_dtype({dt}) from a {self.dtype} WorldModel would widen rounded weights: build "
                             f"the {dt} model from the original predictor instead")
        return WorldModel(None, self.predictor, dtype=dt, gripper_range=self.gripper_range,
                          chunk_samples=self.chunk_samples, impl=self.impl)

    @property
    def max_horizon(self) -> int:
        """Longest action sequence a rollout from one context frame can take (the predictor's time steps)."""
        return self.predictor.config.max_steps

    @property
    def image_size(self) -> int:
        """Side (px) of the square images the encoder expects after preprocessing."""
        img = (self.encoder.config if self.encoder is not None else self.predictor.config).img_size
        return img if isinstance(img, int) else int(img[0])

    @torch.inference_mode()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latents of preprocessed images: [B, 3, H, W] (normalised, see `data.transforms`) -> [B, N, D] fp32.

        Each image is encoded alone as a 2-frame clip (the frame repeated) and layer-normed without affine.
        """
        if self.encoder is None:
            raise ValueError("this WorldModel has no encoder: pass latents, or build it with one")
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be [B, 3, H, W] preprocessed images, got {got}")
        dev = next(self.encoder.parameters()).device
        z = self.encoder(images.to(dev, self.encoder_dtype))
        if tuple(z.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"images of {tuple(images.shape[-2:])} px give latents {tuple(z.shape[1:])}, but the predictor "
                f"expects {self.latent_shape} (tokens, width): resize to the predictor's img_size"
            )
        return F.layer_norm(z.float(), (z.shape[-1],), eps=TARGET_LN_EPS)

    def encode_image_files(self, images: list[Any]) -> torch.Tensor:
        """Latents [B, N, D] of images given as paths, PIL images or HWC uint8 arrays (eval preprocessing)."""
        from vjepa_fast.data.transforms import preprocess_image

        batch = torch.stack([preprocess_image(im, self.image_size) for im in images])
        return self.encode(batch)

    @torch.inference_mode()
    def rollout(
        self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor, *, return_all: bool = False
    ) -> torch.Tensor:
        """Predicted latents after applying each candidate action sequence.

        z0: [B, N, D] context latents (from `encode`); state: [B, 7]; actions: [B, S, H, 7].
        Step h feeds (z_h, action_h, state_h) with the K/V of steps < h from the cache, so only the N + 2 new
        tokens are computed per sample and step; state_{h+1} = compose(state_h, action_h).
        Returns [B, S, N, D] float32, layer-normed (the latent after the last action), or with
        return_all [B, S, H, N, D] (after every action).
        """
        z0, flat_a, flat_s = self._rollout_inputs(z0, state, actions)
        b, s, h, _ = actions.shape
        n, d = self.latent_shape
        dev = z0.device
        total = b * s
        chunk = total if self.chunk_samples is None else self.chunk_samples
        outs = []
        for start in range(0, total, chunk):
            end = min(total, start + chunk)
            # Rows start..end-1 belong to problems (start // s) .. ((end - 1) // s).
            if start % s == 0 and end % s == 0:
                # Whole problems: one context latent per problem, broadcast over its samples.
                zc = z0[start // s : end // s]
            else:
                zc = z0.index_select(0, torch.arange(start, end, device=dev) // s)
            outs.append(self._rollout_rows(zc, flat_a[start:end], flat_s[start:end], return_all))
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        return out.view(b, s, h, n, d) if return_all else out.view(b, s, n, d)

    def rollout_differentiable(self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """`rollout` with autograd from the result back to `actions` (for gradient planners): the predictor's
        own forward with a KV cache, its weights frozen, in this model's dtype. [B, S, N, D] float32."""
        z0, flat_a, flat_s = self._rollout_inputs(z0, state, actions)
        b, s = actions.shape[:2]
        return self._module_steps(z0, flat_a, flat_s, False).view(b, s, *self.latent_shape)

    def _rollout_inputs(
        self, z0: torch.Tensor, state: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checks a rollout's inputs; returns z0 on the predictor's device and the actions and visited states
        flattened over problems and samples, [B * S, H, 7] fp32 (states advanced in fp32 from `state`)."""
        check_rollout_inputs(self.latent_shape, z0, state, actions)
        b, s, h, _ = actions.shape
        if h > self.max_horizon:
            raise ValueError(f"horizon {h} exceeds the predictor's {self.max_horizon} time steps")
        dev = next(self.predictor.parameters()).device
        z0, state, actions = z0.to(dev), state.to(dev, torch.float32), actions.to(dev, torch.float32)
        # [B, S, H+1, 7]: states are advanced in fp32, independently of the latents.
        states = rollout_states(state[:, None, :], actions, gripper_range=self.gripper_range)
        return z0, actions.reshape(b * s, h, ACTION_DIM), states[:, :, :h].reshape(b * s, h, ACTION_DIM)

    def _module_steps(self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, return_all: bool
                      ) -> torch.Tensor:
        """The predictor's own forward step by step with an ACKVCache: z [M or B, N, D] (B shared by M // B
        consecutive rows), actions, states [M, H, 7] -> [M, N, D] or [M, H, N, D] fp32, layer-normed."""
        h, d = actions.shape[1], z.shape[-1]
        pred = self.predictor
        cache = ACKVCache() if h > 1 else None
        a, st, x = actions.to(self.dtype), states.to(self.dtype), z.to(self.dtype)
        if x.shape[0] != a.shape[0]:
            x = x.repeat_interleave(a.shape[0] // x.shape[0], 0)
        all_steps = []
        for t in range(h):
            zt = F.layer_norm(pred(x, a[:, t : t + 1], st[:, t : t + 1], cache=cache).float(), (d,),
                              eps=TARGET_LN_EPS)
            if return_all:
                all_steps.append(zt)
            x = zt.to(self.dtype)
        return torch.stack(all_steps, 1) if return_all else zt

    def _rollout_rows(
        self, z: torch.Tensor, actions: torch.Tensor, states: torch.Tensor, return_all: bool
    ) -> torch.Tensor:
        """z: [M, N, D] fp32 (or [B, N, D] shared by M // B consecutive rows with "lean"); actions, states:
        [M, H, 7] -> [M, N, D] or [M, H, N, D] fp32."""
        d = z.shape[-1]

        def norm(out: torch.Tensor) -> torch.Tensor:
            return F.layer_norm(out.float(), (d,), eps=TARGET_LN_EPS)

        if self._lean is not None:
            if self._lean.device != z.device:
                self._lean.to(z.device)
            out = self._lean(z, actions, states, return_all=return_all, between_steps=norm)
            out = norm(out)
            return out if return_all else out[:, 0]
        return self._module_steps(z, actions, states, return_all)


def _frozen_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    out = copy.deepcopy(module).to(dtype).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out
