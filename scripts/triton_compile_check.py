"""Compile the Triton attention kernels for a GPU target without a GPU: Triton's own front end, LLVM and the
ptxas it ships, for sm_90 (H100/H200) by default.

The interpreter tests (TRITON_INTERPRET=1) check the maths; this checks that the kernels also lower to
PTX/cubin (the interpreter accepts some code the compiler refuses) and reports each variant's shared memory,
registers and spills, so a tile choice that cannot fit shows up before a GPU is lent. Run:

    python scripts/triton_compile_check.py [--arch 90] [--log FILE]

Must run WITHOUT TRITON_INTERPRET. Exits non-zero if a variant fails to compile, spills registers, or needs
more shared memory than the target has (227 KiB on sm_90).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

SMEM_LIMIT = {90: 232448, 80: 166912, 89: 101376, 100: 232448}


def _variants(head_dims, dtypes):
    import triton.language as tl

    dots = {"fp16": tl.float16, "bf16": tl.bfloat16, "fp32": tl.float32}
    for head_dim in head_dims:
        for dtype in dtypes:
            for causal in (False, True):
                if dtype == "fp32" and head_dim != 64:
                    continue  # fp32 is the exactness path, not the fast one: one head size
                yield head_dim, dtype, dots[dtype], causal


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability, e.g. 90 for H100/H200")
    ap.add_argument("--log", type=Path, default=None, help="also write the report here")
    ap.add_argument("--head-dims", type=int, nargs="+", default=[24, 64, 80, 128], help="head sizes to compile")
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16", "fp32"], choices=["bf16", "fp16", "fp32"])
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("error: unset TRITON_INTERPRET: the interpreter compiles nothing", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import vjepa_fast.kernels.attention as ka

    target = GPUTarget("cuda", args.arch, 32)
    lines = [f"triton {triton.__version__}, target sm_{args.arch}"]
    failures = []
    ptr_args = {
        "fwd": ("Q", "K", "V", "O", "LSE", "POS_Q", "POS_K", "CU_Q", "CU_K", "SEQUSED_K", "COS", "SIN"),
        "dkdv": ("Q", "K", "V", "DO", "LSE", "DELTA", "DK", "DV", "POS_Q", "POS_K", "CU_Q", "CU_K", "SEQUSED_K",
                 "COS", "SIN"),
        "dq": ("Q", "K", "V", "DO", "LSE", "DELTA", "DQ", "POS_Q", "POS_K", "CU_Q", "CU_K", "SEQUSED_K", "COS", "SIN"),
    }
    kernels = {"fwd": ka._fwd_kernel, "dkdv": ka._bwd_dkdv_kernel, "dq": ka._bwd_dq_kernel}
    t0 = time.time()
    for head_dim, dtype, dot, causal in _variants(args.head_dims, args.dtypes):
        for kind, fn in kernels.items():
            bm, bn, warps, stages = _blocks_for(ka, head_dim, kind != "fwd", dtype == "fp32")
            sig = {}
            for name in fn.arg_names:
                if name in ptr_args[kind]:
                    if name in ("LSE", "DELTA", "COS", "SIN"):
                        sig[name] = "*fp32"
                    elif name.startswith(("POS", "CU", "SEQUSED")):
                        sig[name] = "*i32"
                    else:
                        sig[name] = f"*{dtype}"
                elif name in ("qk_scale", "scale"):
                    sig[name] = "fp32"
                elif name in ("HEAD_DIM", "BLOCK_D", "BLOCK_M", "BLOCK_N", "CAUSAL", "HAS_SEQUSED",
                                                 "DOT_DTYPE", "PRECISION"):
                    sig[name] = "constexpr"
                else:
                    sig[name] = "i32"
            consts = dict(HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)),
                          BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, DOT_DTYPE=dot,
                          # the planner's KV-buffer mode (inference: forward only) rides on the full-attention
                          # forward variants
                          HAS_SEQUSED=kind == "fwd" and not causal,
                          PRECISION="ieee" if dtype == "fp32" else "tf32")
            label = f"{kind:4s} hd={head_dim:3d} {dtype} causal={int(causal)} tiles={bm}x{bn} warps={warps} stages={stages}"
            try:
                src = ASTSource(fn, sig, constexprs=consts)
                ck = triton.compile(src, target=target, options=dict(num_warps=warps, num_stages=stages))
            except Exception as exc:  # noqa: BLE001  (report every variant, then fail)
                msg = str(exc).strip().splitlines()
                failures.append(label)
                lines.append(f"FAIL {label}: {msg[-1] if msg else type(exc).__name__}")
                continue
            shared = ck.metadata.shared
            regs, spills = _ptxas_usage(ck, args.arch)
            bad = shared > SMEM_LIMIT.get(args.arch, 232448) or (spills or 0) > 0
            if bad:
                failures.append(label)
            lines.append(f"{'FAIL' if bad else 'ok  '} {label}: shared {shared} B, regs {regs}, spills {spills}")
    lines.append(f"{len(failures)} failing variant(s); {time.time() - t0:.0f} s")
    report = "\n".join(lines)
    print(report)
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        args.log.write_text(report + "\n")
    return 1 if failures else 0


def _blocks_for(ka, head_dim: int, backward: bool, fp32: bool):
    saved = os.environ.pop("TRITON_INTERPRET", None)
    try:
        return ka._blocks(head_dim, backward, fp32)
    finally:
        if saved is not None:
            os.environ["TRITON_INTERPRET"] = saved


def _ptxas_usage(ck, arch_cc: int) -> tuple[int | None, int | None]:
    """Registers and spill bytes from ptxas -v on the kernel's PTX (Triton keeps the PTX in ck.asm)."""
    import subprocess
    import tempfile

    from triton.backends.nvidia.compiler import get_ptxas

    ptx = ck.asm.get("ptx")
    if not ptx:
        return None, None
    try:
        ptxas = get_ptxas(arch_cc)
    except TypeError:  # older Triton: no argument
        ptxas = get_ptxas()
    path = ptxas.path if hasattr(ptxas, "path") else ptxas[0]
    arch = re.search(r"\.target\s+(sm_\w+)", ptx)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "k.ptx"
        f.write_text(ptx)
        res = subprocess.run([path, "-v", f"--gpu-name={arch.group(1) if arch else 'sm_90a'}", str(f),
                              "-o", str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
    out = res.stdout + res.stderr
    regs = re.search(r"Used (\d+) registers", out)
    spill = re.search(r"(\d+) bytes spill stores", out)
    return (int(regs.group(1)) if regs else None), (int(spill.group(1)) if spill else None)


if __name__ == "__main__":
    sys.exit(main())
