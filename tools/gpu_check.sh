#!/usr/bin/env bash
# The prepared GPU check: everything a lent GPU machine should run, in one command, with nothing
# built or guessed there.
#
#   tools/gpu_check.sh pack             on a CPU machine: build for sm_90 (shared libaegis) into
#                                       build-gpu/ and stage what the device lacks (binaries, the
#                                       shared libraries ldd finds that the device image does not
#                                       have, the Opacus wheel, the headers and libraries of a
#                                       fallback build) as .gpu/aegis-gpu.tar.xz (about 10 MiB),
#                                       with .gpu/MANIFEST beside it
#   tools/gpu_check.sh run [--dry-run] [--rebuild] [--budget SECONDS]
#                                       on the device (with .gpu/ carried): nvidia-smi, aegis info,
#                                       every CUDA-vs-CPU test (gtest JSON), every GPU benchmark
#                                       beside its PyTorch baseline, the CLI suites with
#                                       --device auto, and a Markdown table printed last.
#                                       Writes under $OUT (default ./gpu-check-out): summary.md,
#                                       tests.json, bench.jsonl, info.json, env.txt, log.txt and
#                                       results.tar.gz (every raw file), at most 8 files.
#     --dry-run    the same script on a CPU machine: the GPU tests skip, benchmarks run on the
#                  CPU with tiny sizes (a few seconds each), the CLI suites run one test each;
#                  under 3 minutes. Uses the build tree named by GPU_CHECK_BUILD when set, else
#                  .gpu/ when it holds a pack, else build/.
#     --rebuild    build on the device with its own nvcc and cmake and the carried headers
#                  (what run does by itself when the packed binaries cannot start there).
#     --budget S   stop starting new steps after S seconds (default 450: 8 minutes with margin).
#
# Environment: OUT (results folder), JOBS (build jobs), GPU_CHECK_BUILD (dry run from a build
# tree), AEGIS_CUDA_ARCHS for pack (default 90).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pack_dir=$root/.gpu             # what travels: aegis-gpu.tar.xz and MANIFEST
stage=""                        # the unpacked programs (pack: in the build tree; run: under /tmp)

log() { echo "gpu_check: $*" >&2; }
die() { echo "gpu_check: error: $*" >&2; exit 1; }

# ---- pack -----------------------------------------------------------------------------------

# Shared libraries the device image has (glibc, the C++ runtime, the CUDA libraries that come
# with its CUDA toolkit and its pip packages): never copied, always taken from the device.
is_device_library() {
  case "$1" in
    linux-vdso.so* | ld-linux* | libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | libstdc++.so* | \
      libgcc_s.so* | libcudart.so* | libcublas.so* | libcublasLt.so* | libcurand.so* | libcudnn*.so* | libcuda.so* | \
      libnvrtc*.so* | libz.so* | libnccl.so*) return 0 ;;
  esac
  return 1
}

pack() {
  local build=${GPU_PACK_BUILD:-$root/build-gpu}
  local jobs=${JOBS:-$(nproc)}
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || die "pack needs nvcc (the CUDA toolkit)"
  log "building for sm_${AEGIS_CUDA_ARCHS:-90} into $build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DAEGIS_CUDA=ON -DAEGIS_CUDA_ARCHS="${AEGIS_CUDA_ARCHS:-90}" \
    -DBUILD_SHARED_LIBS=ON >/dev/null || die "cmake configure failed"
  cmake --build "$build" -j "$jobs" >/dev/null || die "build failed (run cmake --build $build to see why)"
  stage=$build/gpu-pack
  rm -rf "$stage" "$pack_dir"
  mkdir -p "$pack_dir" "$stage/bin" "$stage/lib" "$stage/wheels" "$stage/prefix"
  cp "$build/aegis" "$stage/bin/"
  cp "$build"/tests/test_* "$stage/bin/" 2>/dev/null
  rm -f "$stage"/bin/*.cmake "$stage"/bin/*_tests.cmake
  cp "$build"/bench/bench_* "$stage/bin/"
  find "$stage/bin" -type f ! -perm -u+x -delete
  cp -L "$build"/libaegis.so* "$stage/lib/" 2>/dev/null || die "no libaegis.so in $build"
  # Every library the binaries load that the device lacks, found by ldd (not guessed).
  local lib name
  for f in "$stage"/bin/* "$stage"/lib/libaegis.so*; do
    ldd "$f" | awk '$3 ~ /^\// {print $1, $3}' | while read -r name lib; do
      is_device_library "$name" || [ "$name" = libaegis.so ] || cp -Ln "$lib" "$stage/lib/$name" 2>/dev/null || true
    done
  done
  strip --strip-unneeded "$stage"/bin/* "$stage"/lib/*.so* 2>/dev/null || true
  # Opacus (pure Python) for the DP-step baseline: the device has PyTorch but not Opacus.
  if ! python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d "$stage/wheels" \
    opacus >/dev/null 2>&1; then
    log "warning: could not download the opacus wheel; the DP baseline will be skipped on the device"
  fi
  pack_fallback
  write_manifest "$build"
  cp "$stage/MANIFEST" "$pack_dir/MANIFEST"
  # OpenBLAS alone is 35 MiB (every CPU's kernels): xz brings the whole pack to about 10 MiB.
  tar -C "$stage" -cf - . | xz -T0 -6 >"$pack_dir/aegis-gpu.tar.xz" || die "could not compress the pack"
  local mib
  mib=$(du -sm "$pack_dir" | cut -f1)
  log "packed $(ls "$stage/bin" | wc -l) programs and $(ls "$stage/lib" | wc -l) libraries into .gpu/ (${mib} MiB compressed)"
  [ "$mib" -le 60 ] || die ".gpu/ is ${mib} MiB, over the 60 MiB that may travel with the working tree"
}

# Headers, CMake package files and libraries of the dependencies, so that the device can build
# aegis itself with its own nvcc and cmake when the packed binaries cannot run there.
pack_fallback() {
  local p=$stage/prefix
  mkdir -p "$p/include" "$p/share/cmake"
  cp -r /usr/include/CLI /usr/include/nlohmann /usr/include/gtest /usr/include/sodium /usr/include/sodium.h \
    /usr/include/zlib.h /usr/include/zconf.h "$p/include/" 2>/dev/null
  local blas_inc
  blas_inc=$(dirname "$(find /usr/include -path '*openblas-openmp*' -name cblas.h | head -1)")
  [ -d "$blas_inc" ] && mkdir -p "$p/include/openblas" && cp "$blas_inc"/*.h "$p/include/openblas/"
  cp /usr/local/cuda/include/cudnn*.h "$p/include/" 2>/dev/null || true
  cp /usr/local/cuda/include/nccl*.h "$p/include/" 2>/dev/null || true
  cp -r /usr/share/cmake/CLI11 /usr/share/cmake/nlohmann_json "$p/share/cmake/" 2>/dev/null
  # GoogleTest's package files find its archives relative to themselves: keep the layout.
  local multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  mkdir -p "$p/lib/$multiarch/cmake"
  cp -r "/usr/lib/$multiarch/cmake/GTest" "$p/lib/$multiarch/cmake/" 2>/dev/null
  cp /usr/lib/"$multiarch"/libgtest.a /usr/lib/"$multiarch"/libgtest_main.a "$p/lib/$multiarch/" 2>/dev/null
  cp /usr/lib/"$multiarch"/libgmock*.a "$p/lib/$multiarch/" 2>/dev/null || true
}

write_manifest() {
  local build=$1
  {
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "packed: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nvcc: $( (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version) | tail -1)"
    echo "cuda_archs: ${AEGIS_CUDA_ARCHS:-90}"
    grep -h "define CUDNN_MAJOR\|define CUDNN_MINOR\|define CUDNN_PATCHLEVEL" /usr/local/cuda/include/cudnn_version.h 2>/dev/null |
      awk '{printf "%s=%s ", $2, $3} END {print ""}' | sed 's/^/cudnn_built_against: /'
    grep -h "define CUBLAS_VER_MAJOR\|define CUBLAS_VER_MINOR" /usr/local/cuda/include/cublas_api.h 2>/dev/null |
      awk '{printf "%s=%s ", $2, $3} END {print ""}' | sed 's/^/cublas_built_against: /'
    echo "files:"
    (cd "$stage" && find bin lib wheels -type f -printf '  %p %s\n' | sort)
  } >"$stage/MANIFEST"
}

# ---- run ------------------------------------------------------------------------------------

dry_run=0 rebuild=0 budget=450 budget_given=0
start_time=$(date +%s)
elapsed() { echo $(($(date +%s) - start_time)); }
time_left() { [ "$(elapsed)" -lt "$budget" ]; }

# Where the programs are: the pack, a fallback build, or (dry run) a build tree.
bin_dir="" lib_dir=""
locate_programs() {
  if [ "$rebuild" = 1 ]; then
    fallback_build || return 1
  elif [ -f "$pack_dir/aegis-gpu.tar.xz" ] && [ -z "${GPU_CHECK_BUILD:-}" ]; then
    stage=$work/pack
    mkdir -p "$stage" && xz -dc "$pack_dir/aegis-gpu.tar.xz" | tar -C "$stage" -xf - || die "could not unpack .gpu/aegis-gpu.tar.xz"
    bin_dir=$stage/bin lib_dir=$stage/lib
  elif [ "$dry_run" = 1 ]; then
    local b=${GPU_CHECK_BUILD:-$root/build}
    [ -x "$b/aegis" ] || die "no .gpu/ pack and no build in $b (run tools/gpu_check.sh pack, or build first)"
    bin_dir=$work/bin lib_dir=""
    mkdir -p "$bin_dir"
    ln -sf "$b/aegis" "$bin_dir/aegis"
    for f in "$b"/tests/test_* "$b"/bench/bench_*; do [ -x "$f" ] && [ -f "$f" ] && ln -sf "$f" "$bin_dir/"; done
  else
    die "no .gpu/ pack here: run tools/gpu_check.sh pack on the CPU machine and carry .gpu"
  fi
}

# The CUDA libraries of the device: its toolkit and its pip packages (cuDNN comes from pip; NCCL,
# 200 MiB, from the toolkit or from pip, never from the pack).
device_library_path() {
  local dirs=() d lib
  for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9 libnccl.so.2; do
    d=""
    for cand in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib \
      /usr/lib/x86_64-linux-gnu; do
      [ -e "$cand/$lib" ] && d=$cand && break
    done
    if [ -z "$d" ]; then
      local site
      for site in $(python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
        d=$(find "$site/nvidia" -name "$lib" -printf '%h\n' 2>/dev/null | head -1)
        [ -n "$d" ] && break
      done
    fi
    if [ -n "$d" ]; then dirs+=("$d"); else log "library $lib not found on this machine"; fi
  done
  printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' | paste -sd: -
}

fallback_build() {
  if [ -z "$stage" ] && [ -f "$pack_dir/aegis-gpu.tar.xz" ]; then
    stage=$work/pack
    mkdir -p "$stage" && xz -dc "$pack_dir/aegis-gpu.tar.xz" | tar -C "$stage" -xf -
  fi
  local p=$stage/prefix b=/tmp/aegis-gpu-build
  [ -d "$p" ] || { log "no carried prefix for a fallback build"; return 1; }
  local cudnn_lib cudnn_inc
  cudnn_lib=$(echo "$DEVICE_LIBS" | tr ':' '\n' | while read -r d; do [ -e "$d/libcudnn.so.9" ] && echo "$d/libcudnn.so.9"; done | head -1)
  cudnn_inc=$(dirname "$(find "$(dirname "${cudnn_lib:-/nonexistent}")/.." -name cudnn.h 2>/dev/null | head -1)" 2>/dev/null)
  [ -n "$cudnn_inc" ] && [ -f "$cudnn_inc/cudnn.h" ] || cudnn_inc=$p/include
  log "fallback: building on this machine into $b (cuDNN ${cudnn_lib:-not found})"
  local flags=(-DCMAKE_BUILD_TYPE=Release -DAEGIS_CUDA=ON -DAEGIS_CUDA_ARCHS=90 -DBUILD_SHARED_LIBS=ON
    -DCMAKE_PREFIX_PATH="$p" -DAEGIS_BLAS_LIBRARY="$stage/lib/libopenblas.so.0"
    -DAEGIS_CBLAS_INCLUDE="$p/include/openblas" -DAEGIS_SODIUM_LIBRARY="$stage/lib/libsodium.so.23"
    -DAEGIS_SODIUM_INCLUDE="$p/include" -DAEGIS_CUDNN_INCLUDE="$cudnn_inc" -DZLIB_INCLUDE_DIR="$p/include")
  [ -n "$cudnn_lib" ] && flags+=(-DAEGIS_CUDNN_LIBRARY="$cudnn_lib")
  # NCCL (kernels/rank_sum.h): the device's library (pip's has no unversioned libnccl.so) with the
  # carried header, when the device's toolkit has none of its own.
  local nccl_lib
  nccl_lib=$(echo "$DEVICE_LIBS" | tr ':' '\n' | while read -r d; do [ -e "$d/libnccl.so.2" ] && echo "$d/libnccl.so.2"; done | head -1)
  [ -n "$nccl_lib" ] && [ -f "$p/include/nccl.h" ] &&
    flags+=(-DAEGIS_NCCL_LIBRARY="$nccl_lib" -DAEGIS_NCCL_INCLUDE="$p/include")
  # A machine without zlib's development package still has its runtime library.
  local zlib_lib
  zlib_lib=$(ldconfig -p 2>/dev/null | awk '/libz\.so\.1 .*x86-64/ {print $NF; exit}')
  [ -n "$zlib_lib" ] && [ ! -e /usr/lib/x86_64-linux-gnu/libz.so ] && flags+=(-DZLIB_LIBRARY="$zlib_lib")
  cmake -S "$root" -B "$b" "${flags[@]}" >"$work/fallback-build.log" 2>&1 &&
    cmake --build "$b" -j "${JOBS:-$(nproc)}" >>"$work/fallback-build.log" 2>&1 || {
    log "fallback build failed; the end of its log:"
    tail -20 "$work/fallback-build.log" >&2
    return 1
  }
  bin_dir=$work/bin lib_dir=$b:$stage/lib
  mkdir -p "$bin_dir"
  ln -sf "$b/aegis" "$bin_dir/aegis"
  for f in "$b"/tests/test_* "$b"/bench/bench_*; do [ -x "$f" ] && [ -f "$f" ] && ln -sf "$f" "$bin_dir/"; done
}

run() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --dry-run) dry_run=1 ;;
      --rebuild) rebuild=1 ;;
      --budget) shift; budget=${1:?--budget needs seconds}; budget_given=1 ;;
      *) die "unknown option $1 (see the header of this script)" ;;
    esac
    shift
  done
  [ "$dry_run" = 1 ] && [ "$budget_given" = 0 ] && budget=150
  OUT=${OUT:-$root/gpu-check-out}
  mkdir -p "$OUT"
  work=$(mktemp -d /tmp/gpu-check.XXXXXX)
  mkdir -p "$work/tests" "$work/bench" "$work/cli"
  exec > >(tee "$work/log.txt") 2>&1
  log "start $(date -u +%Y-%m-%dT%H:%M:%SZ), dry run: $dry_run, budget: ${budget}s"

  DEVICE_LIBS=$(device_library_path)
  locate_programs || die "no programs to run"
  export LD_LIBRARY_PATH="${lib_dir:+$lib_dir:}${DEVICE_LIBS:+$DEVICE_LIBS:}${LD_LIBRARY_PATH:-}"
  export AEGIS_SOURCE_DIR=$root AEGIS_DATA_DIR=$root/data AEGIS_CLI=$bin_dir/aegis
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(hostname) ($(nproc) cores)"
    [ -f "$pack_dir/MANIFEST" ] && sed -n '1,6p' "$pack_dir/MANIFEST"
    echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
    echo "device libraries:"
    ldd "$bin_dir/aegis" 2>&1 | grep -E "cuda|cublas|cudnn|curand|not found" | sed 's/^/  /'
    python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' 2>&1
  } >"$work/env.txt"
  nvidia-smi >"$work/nvidia-smi.txt" 2>&1 || echo "nvidia-smi: not available" >"$work/nvidia-smi.txt"

  # The packed binaries must start here; if they cannot (a missing library, a driver older than
  # the toolkit), build on this machine instead.
  if ! "$bin_dir/aegis" info --json >"$work/info.json" 2>"$work/info.err"; then
    log "the packed aegis does not run here: $(head -3 "$work/info.err")"
    if [ "$dry_run" = 0 ] && [ "$rebuild" = 0 ]; then
      rebuild=1
      locate_programs && "$bin_dir/aegis" info --json >"$work/info.json" 2>"$work/info.err" ||
        log "aegis still does not run: $(head -3 "$work/info.err")"
    fi
  fi
  cat "$work/info.json" 2>/dev/null
  # cuDNN: the version built against (pack manifest) next to the one loaded here.
  local built loaded
  built=$(sed -n 's/.*CUDNN_MAJOR=\([0-9]*\) CUDNN_MINOR=\([0-9]*\) CUDNN_PATCHLEVEL=\([0-9]*\).*/\1 \2 \3/p' \
    "$pack_dir/MANIFEST" 2>/dev/null | awk '{print $1 * 10000 + $2 * 100 + $3}')
  loaded=$(grep -o 'cuDNN [0-9]*' "$work/info.json" 2>/dev/null | awk '{print $2}')
  if [ -n "$built" ] && [ -n "$loaded" ] && [ "$built" != "$loaded" ]; then
    echo "cuDNN: built against $built, loaded $loaded here: DIFFERENT versions (results use the loaded one)" |
      tee -a "$work/env.txt"
  else
    echo "cuDNN: built against ${built:-?}, loaded ${loaded:-?}" | tee -a "$work/env.txt"
  fi

  # 1. Every CUDA-vs-CPU test: the GPU tests are named *Cuda* or *Gpu* (tests/support/testing.h).
  local t name
  for t in "$bin_dir"/test_*; do
    time_left || { log "budget spent: skipping the remaining tests"; break; }
    name=$(basename "$t")
    timeout 240 "$t" --gtest_filter='*Cuda*:*Gpu*:*GPU*' --gtest_output="json:$work/tests/$name.json" \
      >"$work/tests/$name.log" 2>&1
    echo "$name: exit $? ($(grep -c '^\[       OK \]' "$work/tests/$name.log") ok, $(grep -c '^\[  FAILED  \]' "$work/tests/$name.log") failed lines)"
  done

  # 2. Benchmarks beside their PyTorch baselines, on the same card in the same run.
  local bench_out=$work/bench.jsonl
  : >"$bench_out"
  local py_ok=0
  python3 -c 'import torch' 2>/dev/null && py_ok=1
  if [ "$py_ok" = 1 ] && [ -n "$stage" ] && ls "$stage"/wheels/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site "$stage"/wheels/*.whl \
      >/dev/null 2>&1 && export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
  fi
  bench() {  # bench NAME TIMEOUT COMMAND...
    local label=$1 limit=$2
    shift 2
    time_left || { log "budget spent: skipping $label"; return; }
    log "bench: $label"
    timeout "$limit" "$@" >>"$bench_out" 2>>"$work/bench/$label.err" || log "bench $label failed or timed out (see bench/$label.err)"
  }
  local py="python3 $root/bench"
  if [ "$dry_run" = 1 ]; then
    bench train_step 60 "$bin_dir/bench_train_step" --batch 16 --steps 2 --warmup 1 --device cpu
    bench dp_step 60 "$bin_dir/bench_dp_step" --batch 16 --steps 2 --warmup 1 --device cpu
    bench dp_step_nonprivate 60 "$bin_dir/bench_dp_step" --mode nonprivate --batch 16 --steps 2 --warmup 1 --device cpu
    bench attack 60 "$bin_dir/bench_attack" --batch 8 --steps 2 --repeats 1 --device cpu
    bench smoothing 60 "$bin_dir/bench_smoothing" --model resnet20 --batch 16 --samples 32 --repeats 1 --device cpu
    if [ "$py_ok" = 1 ]; then
      bench torch_train_step 60 $py/torch_train_step.py --batch 16 --steps 2 --warmup 1 --device cpu
      bench torch_smoothing 60 $py/torch_smoothing.py --model resnet20 --batch 16 --samples 32 --repeats 1 --device cpu
    fi
  else
    bench train_step 60 "$bin_dir/bench_train_step" --batch 256 --steps 50 --warmup 10 --device cuda
    bench dp_step 90 "$bin_dir/bench_dp_step" --batch 256 --steps 30 --warmup 5 --device cuda
    bench dp_step_nonprivate 60 "$bin_dir/bench_dp_step" --mode nonprivate --batch 256 --steps 30 --warmup 5 --device cuda
    bench attack 90 "$bin_dir/bench_attack" --batch 256 --steps 10 --repeats 5 --device cuda
    local p
    for p in fp32 tf32 bf16; do
      bench "smoothing_$p" 90 "$bin_dir/bench_smoothing" --model resnet20 --batch 1000 --samples 20000 --repeats 3 \
        --precision "$p" --device cuda
    done
    if [ "$py_ok" = 1 ]; then
      bench torch_train_step 60 $py/torch_train_step.py --batch 256 --steps 50 --warmup 10 --device cuda
      bench opacus_dp_step 120 $py/opacus_dp_step.py --batch 256 --steps 30 --warmup 5 --device cuda
      bench torch_attack 90 $py/torch_attack.py --batch 256 --steps 10 --repeats 5 --device cuda
      bench torch_smoothing 90 $py/torch_smoothing.py --model resnet20 --batch 1000 --samples 20000 --repeats 3 \
        --device cuda
    else
      log "no PyTorch here: the baselines are skipped"
    fi
  fi

  # 3. The command-line suites as they are (--device left at auto): they must pass on a GPU
  #    machine too. Whatever budget is left.
  #    The dry run only checks the plumbing (the full suites take minutes on 2 cores).
  local cli_filter='*'
  [ "$dry_run" = 1 ] && cli_filter='Cli.InfoReportsBackendsAsJson'
  for t in test_cli test_cli_attack test_cli_certify; do
    [ -x "$bin_dir/$t" ] || continue
    time_left || { log "budget spent: skipping $t in full"; break; }
    timeout $((budget - $(elapsed) > 30 ? budget - $(elapsed) : 30)) "$bin_dir/$t" --gtest_filter="$cli_filter" \
      --gtest_output="json:$work/cli/$t.json" >"$work/cli/$t.log" 2>&1
    echo "$t (--device auto, filter $cli_filter): exit $?"
  done

  # 4. Results: one table last, at most 8 files under $OUT.
  python3 "$root/tools/gpu_summary.py" --work "$work" --dry-run "$dry_run" >"$work/summary.md" ||
    echo "gpu_summary.py failed" >"$work/summary.md"
  python3 - "$work" >"$OUT/tests.json" <<'EOF'
import glob, json, os, sys
out = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "tests", "*.json")) + glob.glob(os.path.join(sys.argv[1], "cli", "*.json"))):
    try:
        out[os.path.relpath(f, sys.argv[1])] = json.load(open(f))
    except Exception as e:
        out[os.path.relpath(f, sys.argv[1])] = {"error": str(e)}
json.dump(out, sys.stdout, indent=1)
EOF
  cp "$work/summary.md" "$work/bench.jsonl" "$work/env.txt" "$OUT/"
  cp "$work/info.json" "$OUT/info.json" 2>/dev/null
  cat "$work/nvidia-smi.txt" >>"$OUT/env.txt"
  log "done in $(elapsed)s"
  cp "$work/log.txt" "$OUT/log.txt"
  tar -czf "$OUT/results.tar.gz" -C "$work" --exclude=./pack --exclude=./bin . 2>/dev/null
  cat "$work/summary.md"
  grep -q '| FAIL' "$work/summary.md" && return 1
  return 0
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) echo "usage: tools/gpu_check.sh pack | run [--dry-run] [--rebuild] [--budget SECONDS]" >&2; exit 2 ;;
esac
