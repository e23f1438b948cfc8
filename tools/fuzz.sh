#!/usr/bin/env bash
# Runs the libFuzzer harnesses (fuzz/fuzz_*.cpp) of an instrumented build, one after the other or
# -j at a time, each from its seed corpus in fuzz/corpus/<harness>, and prints one line per
# harness: executions, executions per second, coverage (cov: edges, ft: features) and the corpus
# size at the end.
#   tools/fuzz.sh [-t SECONDS | -r RUNS] [-j JOBS] [HARNESS...]   default: -t 30, -j 1, every harness
# With -j JOBS that many harnesses run at once (each on one core); the lines print in order.
# FUZZ_BUILD_DIR (default build-asan) is a tree configured with -DAEGIS_FUZZ=ON (tools/bootstrap.sh
# makes one). Inputs the fuzzer adds go to FUZZ_BUILD_DIR/fuzz/<harness>/corpus, never into the
# source tree; an input that crashes, trips a sanitizer, leaks, runs out of memory (-rss_limit_mb,
# -malloc_limit_mb) or hangs (-timeout) is saved there as crash-*, leak-*, oom-* or timeout-*, the
# fuzzer's report is printed, and the script exits 1. Run it alone on a shared machine: a harness
# uses one core.
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=30)
jobs=1
while getopts "t:r:j:" opt; do
  case "$opt" in
    t) limit=(-max_total_time="$OPTARG") ;;
    r) limit=(-runs="$OPTARG") ;;
    j) jobs=$OPTARG ;;
    *) echo "usage: $0 [-t SECONDS | -r RUNS] [-j JOBS] [HARNESS...]" >&2; exit 2 ;;
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
for h in "${harnesses[@]}"; do
  if [ ! -x "$build/fuzz_$h" ]; then
    echo "fuzz: $build/fuzz_$h is missing (configure $build with -DAEGIS_FUZZ=ON and build target fuzz_harnesses)" >&2
    exit 1
  fi
done

# One harness; its summary line and result go to files of its work directory.
run_one() {
  local h=$1 work="$build/fuzz/$1" result
  mkdir -p "$work/corpus" "$work/scratch"
  local log="$work/fuzz.log" start
  start=$(date +%s)
  # Leaks are findings too (LeakSanitizer is on with AddressSanitizer); the scratch directory keeps
  # the harness' temporary files inside the build tree.
  if TMPDIR="$work/scratch" "$build/fuzz_$h" "${limit[@]}" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 \
       -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus" "fuzz/corpus/$h" >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
  fi
  local execs rate cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -1 || true)
  echo "$result" >"$work/result"
  echo "fuzz: $h: $result, ${execs:-?} executions in $(($(date +%s) - start)) s (${rate:-?}/s), ${cov:-no coverage line}" \
    >"$work/summary"
}

running=()
for h in "${harnesses[@]}"; do
  rm -f "$build/fuzz/$h/result" "$build/fuzz/$h/summary"
  run_one "$h" &
  running+=($!)
  if ((${#running[@]} >= jobs)); then
    wait "${running[0]}" || true
    running=("${running[@]:1}")
  fi
done
wait || true

status=0
for h in "${harnesses[@]}"; do
  work="$build/fuzz/$h"
  cat "$work/summary" 2>/dev/null || echo "fuzz: $h: no result"
  if [ "$(cat "$work/result" 2>/dev/null)" != ok ]; then
    status=1
    echo "---- $work/fuzz.log (last 60 lines) ----"
    tail -n 60 "$work/fuzz.log" 2>/dev/null || true
    echo "----"
  fi
done
exit $status
