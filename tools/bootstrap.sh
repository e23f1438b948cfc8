#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for aegis, builds it, and runs one job:
#   tools/bootstrap.sh demo    install what is missing, build the aegis tool, run `aegis demo`
#   tools/bootstrap.sh test    install what is missing, build, run every test suite (ctest)
#   tools/bootstrap.sh build   install what is missing and build only
# Environment: BUILD_DIR (default build), AEGIS_CUDA (AUTO|ON|OFF, default AUTO),
# AEGIS_CUDA_ARCHS (default "80;90"), JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-demo}
case "$job" in demo|test|build) ;; *) echo "usage: $0 demo|test|build" >&2; exit 2 ;; esac

packages=(cmake g++ make pkg-config libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
          nlohmann-json3-dev zlib1g-dev libsodium-dev dataset-fashion-mnist gnuplot-nox fonts-dejavu-core xz-utils python3)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}" >&2
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

build=${BUILD_DIR:-build}
jobs=${JOBS:-$(nproc)}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DAEGIS_CUDA="${AEGIS_CUDA:-AUTO}" \
      -DAEGIS_CUDA_ARCHS="${AEGIS_CUDA_ARCHS:-80;90}" >/dev/null
# The demo needs only the command-line tool (and the library under it); tests and benchmarks are
# built by the test and build jobs.
if [ "$job" = demo ]; then
  cmake --build "$build" -j "$jobs" --target aegis_cli
else
  cmake --build "$build" -j "$jobs"
fi

# The test command also packs the prepared GPU check (tools/gpu_check.sh) when the CUDA backend
# is built, so that a ctest case rehearses it over the pack exactly as a GPU machine would run it.
if [ "$job" = test ] && grep -q 'define AEGIS_HAS_CUDA 1' "$build/generated/core/config.h" 2>/dev/null; then
  JOBS=$jobs bash tools/gpu_check.sh pack
fi

case "$job" in
  demo) exec "$build/aegis" demo ;;
  # Serially: each test already uses every core through OpenMP, and OpenMP teams that share
  # cores with another process spin against each other (measured: a 0.7 s test took minutes).
  test) exec ctest --test-dir "$build" --output-on-failure ;;
  build) ;;
esac
