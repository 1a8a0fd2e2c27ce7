"""Compute dtype by capability, and the gate in front of private torch ops.

CPUs differ from one machine to the next: Intel with AMX (bf16 matmuls ~4x fp32), AVX-512 with AVX512_BF16
(~2x), and AVX2-only parts such as an AMD EPYC without AVX-512, where bf16 `F.linear` runs ~7x SLOWER than
fp32 (10 vs 69 GFLOP/s measured) and oneDNN's private bf16 kernels do not exist at all
(`torch.ops.mkldnn._linear_pointwise` raises "could not create a primitive descriptor"). So:

- `resolve_dtype("auto", device)` is bf16 where the device does bf16 natively (a CUDA GPU with bf16; a CPU
  with AMX or AVX512_BF16, by torch's own checks) and fp32 elsewhere, logged once per (what, device, choice).
  An explicit bf16 on a CPU without native bf16 is honoured (it works, slowly) with a warning.
- `private_cpu_ops_ok(dtype)` says whether a private oneDNN op may be called; the public path is the fallback.
- One dtype vocabulary for every option: "bfloat16", "float16", "float32" (`DTYPES`: name -> torch dtype) and
  "auto"; the trainers' `amp` is "auto", "bfloat16" or "none" ("bf16", its old spelling, still reads).
- `VJEPA_FAST_CPU_FALLBACK=1` (or `force_cpu_fallback(True)`) makes this machine behave as an AVX2-only CPU:
  no native bf16 for "auto", no private CPU ops, and the EMA op's AVX2 code path. CI runs the planning and
  robot tests once with it, so the fallback is tested whatever CPU CI has.
"""

from __future__ import annotations

import logging
import os
import warnings

import torch

__all__ = [
    "AMP_CHOICES", "amp_dtype", "canonical_amp", "check_dtype_name", "DTYPE_CHOICES", "DTYPES", "FALLBACK_ENV",
    "cpu_fallback_forced", "cpu_summary", "force_cpu_fallback", "native_bf16", "private_cpu_ops_ok", "resolve_dtype",
    "dtype_name",
]

log = logging.getLogger(__name__)

FALLBACK_ENV = "VJEPA_FAST_CPU_FALLBACK"
# What a user may pass wherever a compute dtype is chosen.
DTYPE_CHOICES = ("auto", "bfloat16", "float32")

# The one name <-> dtype table (planner rollouts, feature and latent caches, checkpoints' recorded dtypes).
DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
_NAMES = {v: k for k, v in DTYPES.items()}
_BY_NAME = DTYPES
_forced: bool | None = None  # set by force_cpu_fallback; None: read the environment
_said: set[tuple[str, str, str]] = set()


def cpu_fallback_forced() -> bool:
    """True when the AVX2-only behaviour is forced (force_cpu_fallback, or VJEPA_FAST_CPU_FALLBACK=1)."""
    if _forced is not None:
        return _forced
    return os.environ.get(FALLBACK_ENV, "").strip() not in ("", "0", "false", "False", "no")


def force_cpu_fallback(on: bool | None) -> None:
    """Force (True) or forbid (False) the AVX2-only behaviour in this process; None: back to the environment.
    (The EMA op reads VJEPA_FAST_CPU_FALLBACK once, when the extension loads: use `vjepa_fast._C.set_ema_cpu_isa`
    to switch it later.)"""
    global _forced
    _forced = on


def _cpu_has_native_bf16() -> bool:
    # torch's own capability checks: AMX tiles or AVX512_BF16 in the CPU, and oneDNN able to use them.
    cpu = torch.cpu
    amx = getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    avx512_bf16 = getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    if not (amx or avx512_bf16):
        return False
    mkldnn_bf16 = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(mkldnn_bf16()) if mkldnn_bf16 is not None else True


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether `device` does bf16 maths natively (fast): CUDA with bf16 support; a CPU with AMX or AVX512_BF16
    (False when the fallback is forced)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type == "cpu":
        return not cpu_fallback_forced() and _cpu_has_native_bf16()
    return False


def cpu_summary() -> dict[str, object]:
    """Which CPU code paths run here (what benchmarks record beside their timings): torch's capability string,
    AMX, AVX512_BF16, native bf16 (after the fallback switch), whether the fallback is forced, the CPU's name."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu": name or "unknown",
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
        "avx512_bf16": bool(getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "native_bf16": native_bf16("cpu"),
        "cpu_fallback_forced": cpu_fallback_forced(),
    }


def private_cpu_ops_ok(dtype: torch.dtype) -> bool:
    """Whether the private oneDNN CPU ops (`torch.ops.mkldnn._linear_pointwise` with fused epilogues) may run in
    `dtype`: present in this torch, not forced off, and for bf16 only on a CPU with native bf16 (elsewhere
    oneDNN has no bf16 inner-product kernel)."""
    if cpu_fallback_forced() or not torch.backends.mkldnn.is_available():
        return False
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or not hasattr(op, "binary"):
        return False
    if dtype == torch.float32:
        return True
    return dtype == torch.bfloat16 and _cpu_has_native_bf16()


def dtype_name(dtype: torch.dtype) -> str:
    """"bfloat16", "float16" or "float32" for the torch dtype."""
    return _NAMES[dtype]


def check_dtype_name(name: object, what: str, *, choices: tuple[str, ...] | None = None, auto: bool = True) -> str:
    """`name` if it is one of `choices` (default: every name in DTYPES) or, with `auto`, "auto"; else a
    ValueError naming `what` and the choices. Checked without a device (resolve_dtype picks for one)."""
    allowed = tuple(choices or DTYPES)
    if not isinstance(name, str) or not ((auto and name == "auto") or name in allowed):
        head = "'auto' or one of" if auto else "one of"
        raise ValueError(f"{what} must be {head} {sorted(allowed)}, got {name!r}")
    return name


def resolve_dtype(dtype: torch.dtype | str, device: torch.device | str = "cpu", *, what: str = "compute") -> torch.dtype:
    """The torch dtype for `dtype` on `device`: "auto" -> bf16 where native (see `native_bf16`), else fp32
    (logged once); "bfloat16" / "float32" / "float16" or a torch dtype as given (an explicit bf16 on a CPU
    without native bf16 warns once: it runs, several times slower than fp32). `what` names the choice in
    the log ("planner rollout", "pretraining autocast", ...)."""
    dev = torch.device(device)
    if isinstance(dtype, torch.dtype):
        if dtype not in _NAMES:
            raise ValueError(f"{what} dtype must be one of {sorted(_BY_NAME)} or 'auto', got {dtype}")
        out = dtype
    elif dtype == "auto":
        out = torch.bfloat16 if native_bf16(dev) else torch.float32
        _say(what, dev, out, f"{what} dtype 'auto' on {dev.type}: {_NAMES[out]} ({_why(dev, out)})", warn=False)
        return out
    elif dtype in _BY_NAME:
        out = _BY_NAME[dtype]
    else:
        raise ValueError(f"{what} dtype must be 'auto' or one of {sorted(_BY_NAME)}, got {dtype!r}")
    if out == torch.bfloat16 and dev.type == "cpu" and not native_bf16(dev):
        _say(what, dev, out, f"{what} dtype bfloat16 on a CPU without native bf16 (no AMX / AVX512_BF16"
             f"{', fallback forced' if cpu_fallback_forced() else ''}): it runs, but several times slower than "
             "float32; 'auto' picks float32 here", warn=True)
    return out


def _why(dev: torch.device, out: torch.dtype) -> str:
    if dev.type == "cuda":
        return "the GPU does bf16" if out == torch.bfloat16 else "no bf16 on this GPU"
    if cpu_fallback_forced():
        return f"{FALLBACK_ENV} forces the AVX2-only fallback"
    if out == torch.bfloat16:
        return "CPU with AMX or AVX512_BF16"
    return f"CPU without native bf16, capability {torch.backends.cpu.get_cpu_capability()}"


def _say(what: str, dev: torch.device, out: torch.dtype, msg: str, *, warn: bool) -> None:
    key = (what, dev.type, _NAMES[out] + ("!" if warn else ""))
    if key in _said:
        return
    _said.add(key)
    if warn:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    else:
        log.info(msg)


AMP_CHOICES = ("auto", "bfloat16", "none")
# Older spellings of an amp setting; read, with a note, as the canonical one.
AMP_ALIASES = {"bf16": "bfloat16"}
# What replaced the old boolean key `bf16` of the trainers' configs (their RENAMED_KEYS).
AMP_RENAMED = ('amp = "auto" | "bfloat16" | "none" (auto: bf16 autocast where the device does bf16 natively, fp32 '
               'elsewhere)')


def canonical_amp(amp: str, what: str = "amp") -> str:
    """The canonical spelling of an `amp` setting: "auto", "bfloat16" or "none" ("bf16" reads as "bfloat16",
    noted once in the log); ValueError naming `what` otherwise."""
    if amp in AMP_ALIASES:
        if ("amp", amp, "") not in _said:
            _said.add(("amp", amp, ""))
            log.info('amp "%s" is the old spelling of "%s" (one dtype vocabulary for every option)', amp,
                     AMP_ALIASES[amp])
        return AMP_ALIASES[amp]
    if amp not in AMP_CHOICES:
        raise ValueError(f"{what} must be one of {AMP_CHOICES}, got {amp!r}")
    return amp


def amp_dtype(amp: str, device: torch.device | str, *, what: str = "autocast") -> torch.dtype | None:
    """The autocast dtype of a trainer's `amp` setting on `device`: "auto" -> bf16 where the device does bf16
    natively, else None (fp32, no autocast); "bfloat16" (or "bf16") -> bf16 (warns on a CPU without native bf16);
    "none" -> None."""
    amp = canonical_amp(amp, f"{what}: amp")
    if amp == "none":
        return None
    dt = resolve_dtype("auto" if amp == "auto" else "bfloat16", device, what=what)
    return dt if dt == torch.bfloat16 else None
