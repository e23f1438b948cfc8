#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for aegis, builds it, and runs one job:
#   tools/bootstrap.sh demo    install what is missing, build the aegis tool, run `aegis demo`
#   tools/bootstrap.sh test    install what is missing, build, run every test suite (ctest); the
#                              ONNX parity fixtures are made first with onnx and onnxruntime from
#                              PyPI, in a virtual environment in the build tree; then build the
#                              Python package's wheel, install it in a second environment and run
#                              its pytest suites (tests/python)
#   tools/bootstrap.sh build   install what is missing and build only
# The test job then builds a second, CPU-only tree with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer (SANITIZE_BUILD_DIR, default build-asan), runs the file-reader test
# suites in it, and runs each libFuzzer harness for FUZZ_SECONDS (default 30) seconds.
# SANITIZE=address,undefined bash tools/bootstrap.sh test does only that second part (the
# sanitizer job); SANITIZE=off skips it. FUZZ_SECONDS=0 skips the fuzzing.
# Environment: BUILD_DIR (default build), AEGIS_CUDA (AUTO|ON|OFF, default AUTO),
# AEGIS_CUDA_ARCHS (default "80;90"), AEGIS_MPI (AUTO|ON|OFF, default AUTO), JOBS (default: number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

job=${1:-demo}
case "$job" in demo|test|build) ;; *) echo "usage: $0 demo|test|build" >&2; exit 2 ;; esac

packages=(cmake g++ make pkg-config libopenblas-openmp-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev
          nlohmann-json3-dev zlib1g-dev libsodium-dev libonnx-dev libprotobuf-dev libopenmpi-dev openmpi-bin dataset-fashion-mnist gnuplot-nox fonts-dejavu-core xz-utils python3 python3-venv)
sanitize=${SANITIZE:-}
if [ "$job" = test ] && [ "$sanitize" != off ]; then
  # clang with its sanitizer and libFuzzer runtimes, and LLVM's OpenMP for clang's -fopenmp.
  packages+=(clang libclang-rt-14-dev libomp-14-dev)
fi
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

# The instrumented tree: everything compiled with -fsanitize=$1, the library also with coverage for
# libFuzzer. Only the suites that read files and parse bytes are built and run there (the label
# unit selects the suites built; an unbuilt one is registered as *_NOT_BUILT without that label):
# they are where malformed input meets the code, and they take seconds instrumented; the other
# suites are training and end-to-end CLI runs that take minutes each even uninstrumented.
sanitized_suites=(test_data test_serialize test_sweep test_analyze test_runtime test_option_checks test_onnx_import test_onnx_train test_vnnlib)
run_instrumented() {
  local asan_build=${SANITIZE_BUILD_DIR:-build-asan}
  CC=clang CXX=clang++ cmake -S . -B "$asan_build" -DCMAKE_BUILD_TYPE=Release -DAEGIS_CUDA=OFF -DAEGIS_MPI=OFF \
        -DAEGIS_SANITIZE="$1" -DAEGIS_FUZZ=ON -DAEGIS_BUILD_BENCH=OFF >/dev/null
  cmake --build "$asan_build" -j "$jobs" --target "${sanitized_suites[@]}" fuzz_harnesses
  # A sanitizer report fails the test that caused it; leaks count.
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$asan_build" -L unit --no-tests=error --output-on-failure
  if [ "${FUZZ_SECONDS:-30}" != 0 ]; then
    # One harness per core at a time.
    FUZZ_BUILD_DIR=$asan_build bash tools/fuzz.sh -t "${FUZZ_SECONDS:-30}" -j "$jobs"
  fi
}
if [ "$job" = test ] && [ -n "$sanitize" ] && [ "$sanitize" != off ]; then
  run_instrumented "$sanitize"
  exit 0
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DAEGIS_CUDA="${AEGIS_CUDA:-AUTO}" \
      -DAEGIS_CUDA_ARCHS="${AEGIS_CUDA_ARCHS:-80;90}" -DAEGIS_MPI="${AEGIS_MPI:-AUTO}" >/dev/null
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

# The ONNX parity fixtures (tests/onnx/make_fixtures.py) are made again with the current onnx and
# onnxruntime from PyPI, in a virtual environment of the build tree (kept, so a second run installs
# nothing), and test_onnx_import reads them from there (test_onnx_train runs its python too). Offline, the suite falls back to the
# committed fixtures and this says so.
onnx_fixtures() {
  local venv="$build/python-onnx"
  if ! "$venv/bin/python" -c 'import numpy, onnx, onnxruntime' 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q --disable-pip-version-check numpy onnx onnxruntime ||
      { echo "bootstrap: could not install onnx/onnxruntime; ONNX tests use the committed fixtures" >&2; return 0; }
  fi
  local out="$build/onnx-fixtures"
  case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
  "$venv/bin/python" tests/onnx/make_fixtures.py "$out" >/dev/null
  export AEGIS_ONNX_FIXTURES="$out"
  # test_onnx_train checks the files aegis writes with onnx.checker and onnxruntime from the same venv.
  case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
  export AEGIS_ONNX_PYTHON="$venv/bin/python"
}

# The Python package: a wheel built from this checkout with scikit-build-core and nanobind (from
# PyPI, in a virtual environment of the build tree), linking the library this build compiled
# (AEGIS_LIBRARY_DIR) rather than compiling it again; installed into that environment and tested
# there with pytest (tests/python), with numpy, and torch (CPU use only) and onnx for the interop tests (torch.onnx.export). The
# tests import the installed package, never python/ of the source tree, and compare against the
# command-line tool of the same build (AEGIS_CLI).
python_tests() {
  local venv="$build/python-env"
  case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac
  if ! "$venv/bin/python" -c 'import numpy, pytest, nanobind, scikit_build_core, torch, onnx' 2>/dev/null; then
    python3 -m venv "$venv"
    # A current pip first: the one a Debian venv starts with may predate build options (-C).
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install -q --disable-pip-version-check numpy pytest nanobind scikit-build-core torch onnx
  fi
  local root=$PWD
  local wheels="$root/$build/wheel"
  case "$build" in /*) wheels="$build/wheel" ;; esac
  rm -rf "$wheels"
  "$venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$wheels" \
    --config-settings=cmake.define.AEGIS_LIBRARY_DIR="$(cd "$build" && pwd)" \
    --config-settings=build-dir="$(cd "$build" && pwd)/python-build" .
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheels"/aegis-*.whl
  # From the build tree, so that nothing of the source tree shadows the installed package.
  (cd "$build" && AEGIS_CLI="$PWD/aegis" OMP_NUM_THREADS=${OMP_NUM_THREADS:-$jobs} \
     "$venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/python")
}

case "$job" in
  demo) exec "$build/aegis" demo ;;
  # One test per core at a time, each free to use every core through OpenMP: with OpenMP's passive
  # wait policy, teams that share cores with another process sleep instead of spinning against
  # each other (spinning, a 0.7 s test took minutes). Measured on 2 cores: 5.3 minutes for the
  # suite, against 10.4 run serially.
  test)
    onnx_fixtures
    OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE} ctest --test-dir "$build" --output-on-failure -j "$jobs"
    python_tests
    if [ "$sanitize" != off ]; then run_instrumented address,undefined; fi
    ;;
  build) ;;
esac
