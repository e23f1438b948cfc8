#!/usr/bin/env bash
# Runs the libFuzzer harnesses (fuzz/fuzz_*.cpp) of an instrumented build, one after the other,
# each from its seed corpus in fuzz/corpus/<harness>, and prints one line per harness: executions,
# executions per second, coverage (cov: edges, ft: features) and the corpus size at the end.
#   tools/fuzz.sh [-t SECONDS | -r RUNS] [HARNESS...]   default: -t 30, every harness
# FUZZ_BUILD_DIR (default build-asan) is a tree configured with -DAEGIS_FUZZ=ON (tools/bootstrap.sh
# makes one). Inputs the fuzzer adds go to FUZZ_BUILD_DIR/fuzz/<harness>/corpus, never into the
# source tree; an input that crashes, trips a sanitizer, leaks, runs out of memory (-rss_limit_mb,
# -malloc_limit_mb) or hangs (-timeout) is saved there as crash-*, leak-*, oom-* or timeout-*, the
# fuzzer's report is printed, and the script exits 1. Run it alone on a shared machine: a harness
# uses one core.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=30)
while getopts "t:r:" opt; do
  case "$opt" in
    t) limit=(-max_total_time="$OPTARG") ;;
    r) limit=(-runs="$OPTARG") ;;
    *) echo "usage: $0 [-t SECONDS | -r RUNS] [HARNESS...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
build=${FUZZ_BUILD_DIR:-build-asan}
harnesses=("$@")
if ((${#harnesses[@]} == 0)); then
  harnesses=(safetensors idx cifar10 sweep_tsv sweep_settings analyze vnnlib)
  # The ONNX harness exists when the build found libonnx-dev.
  if [ -x "$build/fuzz_onnx" ]; then harnesses+=(onnx); fi
fi

status=0
for h in "${harnesses[@]}"; do
  exe="$build/fuzz_$h"
  if [ ! -x "$exe" ]; then
    echo "fuzz: $exe is missing (configure $build with -DAEGIS_FUZZ=ON and build target fuzz_harnesses)" >&2
    exit 1
  fi
  work="$build/fuzz/$h"
  mkdir -p "$work/corpus" "$work/scratch"
  log="$work/fuzz.log"
  start=$(date +%s)
  # Leaks are findings too (LeakSanitizer is on with AddressSanitizer); the scratch directory keeps
  # the harness' temporary files inside the build tree.
  if TMPDIR="$work/scratch" "$exe" "${limit[@]}" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 \
       -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "fuzz/corpus/$h" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -1 || true)
  echo "fuzz: $h: $result, ${execs:-?} executions in $(($(date +%s) - start)) s (${rate:-?}/s), ${cov:-no coverage line}"
  if [ "$result" != ok ]; then
    echo "---- $log (last 60 lines) ----"
    tail -n 60 "$log"
    echo "----"
  fi
done
exit $status
