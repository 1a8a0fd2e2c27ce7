#!/usr/bin/env bash
# Compiles and links the extension with its CUDA kernels on a machine without a GPU: the .cu files are
# built by nvcc against a CUDA build of torch (torch 2.14.1+cu130, on local disk here) in ./.venv-cuda.
# Nothing is installed into the project's .venv; the build goes to build/cuda-check.
#   NVCC=/usr/local/cuda/bin/nvcc  VJEPA_FAST_CUDA_ARCHS=90
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
if [ ! -x "$NVCC" ]; then
  echo "cuda_compile_check: nvcc not found (set NVCC=/path/to/nvcc)" >&2
  exit 1
fi
VENV=.venv-cuda
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q torch==2.14.1 scikit-build-core pybind11 "cmake>=3.26" ninja numpy 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import torch; assert torch.version.cuda, 'need a CUDA build of torch'; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
BUILD=build/cuda-check
rm -rf "$BUILD"
"$VENV/bin/cmake" -S . -B "$BUILD" -G Ninja \
  -DPython_EXECUTABLE="$PWD/$VENV/bin/python" \
  -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DVJEPA_FAST_CUDA=ON -DVJEPA_FAST_CUDA_ARCHS="${VJEPA_FAST_CUDA_ARCHS:-90}" -DCMAKE_CUDA_FLAGS="--resource-usage"
LOG=build/cuda-check.log
"$VENV/bin/cmake" --build "$BUILD" -j "$(nproc)" 2>&1 | tee "$LOG"
# Registers per thread of each kernel, from ptxas (--resource-usage). cem_refit_kernel is launched with up to 1024
# threads: it must fit in 65,536 registers per block, i.e. <= 64 per thread (its __launch_bounds__ asks for that).
regs=$(awk '/Compiling entry function/ {match($0, /_Z[A-Za-z_0-9]+/); fn=substr($0, RSTART, RLENGTH)}
            /Used [0-9]+ registers/ && fn != "" {match($0, /Used [0-9]+ registers/); n=substr($0, RSTART+5, RLENGTH-15);
            print fn, n; fn=""}' "$LOG")
echo "cuda_compile_check: registers per thread (mangled kernel name, count):"
echo "$regs" | sed 's/^/  /'
refit=$(echo "$regs" | awk '/cem_refit_kernel/ {print $2; exit}')
if [ -z "$refit" ]; then
  echo "cuda_compile_check: no ptxas register count for cem_refit_kernel in $LOG" >&2; exit 1
fi
if [ "$refit" -gt 64 ]; then
  echo "cuda_compile_check: cem_refit_kernel uses $refit registers per thread: a 1024-thread block needs <= 64" >&2
  exit 1
fi
so=$(ls "$BUILD"/_C*.so)
# The built module must carry the CUDA kernels (symbols of the .cu translation units).
# (grep reads all of nm's output: with pipefail, grep -q would SIGPIPE nm and fail the pipeline.)
symbols=$(nm -C "$so")
for sym in ema_multi_tensor_kernel vjepa_fast::ema_update_cuda cem_sample_kernel cem_refit_kernel; do
  grep -q "$sym" <<<"$symbols" || { echo "cuda_compile_check: $sym missing from $so (CUDA kernels not built)" >&2; exit 1; }
done
echo "cuda_compile_check: OK ($so)"
