#!/usr/bin/env bash
# The one prepared GPU check: build with CUDA, run the GPU tests and the GPU benchmarks, keep everything
# under $OUT. Made for the lent H100/H200 machine (torch 2.11 + triton 3.6 preinstalled, no internet,
# 16 cores) and to finish well under 8 minutes:
#   OUT=/some/dir bash benchmarks/device_check.sh        (OUT defaults to ./device_out)
# Each step has its own time limit; a failed step is logged and the script goes on to the next, then exits
# non-zero if any step failed. Results: $OUT/summary.txt, $OUT/*.log, $OUT/bench_*.json, $OUT/junit_*.xml.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
export VJEPA_FAST_CUDA=ON VJEPA_FAST_CUDA_ARCHS=${VJEPA_FAST_CUDA_ARCHS:-90}
failed=()
start=$(date +%s)

step() {  # step NAME SECONDS CMD...
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)" | tee -a "$OUT/summary.txt"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $(( $(date +%s) - t0 ))s; tail:" | tee -a "$OUT/summary.txt"
  tail -n 15 "$OUT/$name.log" | sed 's/^/   | /' | tee -a "$OUT/summary.txt"
  [ $rc -eq 0 ] || failed+=("$name")
}

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1
  "$PY" -c "import torch, triton, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'numpy', numpy.__version__)"
  nproc
} >"$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"

step build 300 "$PY" -m pip install --no-build-isolation --no-deps -v -e .
step import 60 "$PY" -c "import vjepa_fast.ops as o, torch; assert o.cuda_built(), 'extension built without CUDA'; print(torch.ops.vjepa_fast.ema_update_, torch.cuda.get_device_name())"
step gpu_tests 180 "$PY" -m pytest tests -m cuda -q -rs --junitxml="$OUT/junit_gpu.xml"
# The fused attention tests run the compiled Triton kernels when a GPU is visible (the interpreter otherwise).
step attention_tests 150 "$PY" -m pytest tests/test_attention.py -q -rs --junitxml="$OUT/junit_attention.xml"
step attention_bench 150 "$PY" -m pytest benchmarks/bench_attention.py --benchmark-only \
  --benchmark-json="$OUT/bench_attention.json" --benchmark-columns=min,mean,median,rounds -q
step gpu_bench 150 "$PY" -m pytest benchmarks -k "cuda and not attention" --benchmark-only --benchmark-json="$OUT/bench_gpu.json" \
  --benchmark-columns=min,mean,median,max,rounds -q

echo "total $(( $(date +%s) - start ))s; failed steps: ${failed[*]:-none}" | tee -a "$OUT/summary.txt"
[ ${#failed[@]} -eq 0 ]
