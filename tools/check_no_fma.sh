#!/usr/bin/env bash
# The smoothing noise is bit-identical on the CPU and the GPU only if no multiply-add of its CUDA
# kernel is contracted into an FMA (kernels/smoothing.h). This compiles kernels/cuda/smoothing.cu
# to PTX for sm_90 and fails if the noise kernel's body holds any fma instruction, or lacks the
# explicitly rounded mul.rn.f32 / add.rn.f32 that the transform is written with.
#   usage: tools/check_no_fma.sh NVCC BUILD_DIR
set -euo pipefail
nvcc=${1:?usage: check_no_fma.sh NVCC BUILD_DIR}
build=${2:?usage: check_no_fma.sh NVCC BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
ptx=$(mktemp /tmp/aegis-smoothing-XXXXXX.ptx)
trap 'rm -f "$ptx"' EXIT
"$nvcc" -ptx -arch=sm_90 -std=c++17 --expt-relaxed-constexpr -O3 -I"$root" -I"$build/generated" \
  "$root/kernels/cuda/smoothing.cu" -o "$ptx"
body=$(awk '/\.entry .*noisy_batch_kernel/ {on = 1} on {print} on && /^}/ {exit}' "$ptx")
[ -n "$body" ] || { echo "check_no_fma: noisy_batch_kernel not found in the PTX" >&2; exit 1; }
fma=$(grep -c 'fma\.' <<<"$body" || true)
rn=$(grep -cE '(mul|add)\.rn\.f32' <<<"$body" || true)
echo "noisy_batch_kernel: $fma fma instructions, $rn explicitly rounded mul/add"
[ "$fma" -eq 0 ] && [ "$rn" -gt 10 ]
