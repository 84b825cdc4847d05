#!/usr/bin/env bash
# The GPU check of spadenorm's kernels, on a CUDA machine with nothing but this checkout and PyTorch (>= 2.11) with
# Triton (>= 3.6), pytest and pytest-benchmark installed: the checkout runs through PYTHONPATH, nothing is built or
# installed. The interpreter is $PYTHON, else python3. At most 7 minutes: the step limits below add up to 420 s;
# less when steps finish early.
#
# Steps, cheapest and most important first, each under its own time limit:
#   preflight   C compiler, Python.h, CUDA, a one-element Triton kernel; the environment and the copy-bandwidth
#               reference (benchmarks/gpu_preflight.py). Stops the run at once, with the reason, when it fails.
#   precompile  every Triton variant the later steps launch, compiled on the host's cores in parallel and loaded once,
#               and the torch.compile baselines compiled, into the on-disk caches the later steps read
#               (benchmarks/gpu_precompile.py): a fresh machine's caches are cold.
#   cuda-tests  the CUDA-marked tests of tests/test_triton.py (the odd masking shape 2x3x1000x1001 first, then
#               realistic shapes; inputs drawn on the GPU) and of tests/test_triton_launch_paths.py (a SPADE layer
#               captured in a CUDA graph after one warm-up).
#   core, compiled, paths, kinds, clade, label_conv
#               the benchmarks of benchmarks/test_gpu_kernels.py, one pytest run each (its docstring gives the case
#               matrix and what was cut). A benchmark step skips the cases that would start within DEADLINE_MARGIN
#               seconds of its limit, so it normally ends on its own with the cases it finished; past its limit it
#               gets SIGINT, and pytest-benchmark still writes the JSON of the finished cases (SIGKILL 20 s later).
#               After each step the report is rebuilt from everything measured so far.
#
# Writes to $OUT when set, else benchmarks/results/ (a handful of files, none in subfolders):
#   gpu_suite.log      everything printed
#   device.json        the preflight's environment and copy bandwidth
#   gpu_steps.tsv      each step's status, exit code, duration and limit
#   gpu_bench.json     the merged pytest-benchmark JSON (for benchmarks/report.py --gpu)
#   gpu_summary.md     the report: per case device time, ideal bytes, GB/s, fraction of copy, speedups, paths, CLADE
#   gpu_summary.json   the same figures as JSON
# Exit status: 0 when every step finished, 1 when a step failed, 2 when the preflight failed, 3 when no step failed
# but a step was cut by its limit or its time budget (its finished cases are in the report).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export SPADENORM_GPU_ENV="$OUT_DIR/device.json"
unset TRITON_INTERPRET
DEADLINE_MARGIN=12
LOG="$OUT_DIR/gpu_suite.log"
STEPS="$OUT_DIR/gpu_steps.tsv"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
rm -f "$OUT_DIR"/device.json "$OUT_DIR"/gpu_bench.json "$OUT_DIR"/gpu_summary.md "$OUT_DIR"/gpu_summary.json
: > "$LOG"
printf 'step\tstatus\texit\tseconds\tlimit\n' > "$STEPS"
failed=0
cut=0

# run_step NAME LIMIT COMMAND...: run COMMAND under LIMIT seconds (SIGINT, then SIGKILL 20 s later), log its output,
# record its status. A step whose cases were skipped for the time budget counts as cut.
run_step() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS status rc
  echo "== $name (limit $limit s) $(date -u +%H:%M:%S)" | tee -a "$LOG"
  SPADENORM_BENCH_DEADLINE=$(($(date +%s) + limit - DEADLINE_MARGIN)) \
    timeout -s INT -k 20 "$limit" "$@" 2>&1 | tee -a "$LOG" "$SCRATCH/$name.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    status="cut by its limit"
    cut=1
  elif [ "$rc" -ne 0 ]; then
    status="failed"
    failed=1
  elif grep -q "the time budget of this step is spent" "$SCRATCH/$name.log"; then
    status="cut by its time budget"
    cut=1
  else
    status="ok"
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$((SECONDS - start))" "$limit" >> "$STEPS"
  echo "== $name: $status (exit $rc, $((SECONDS - start)) s)" | tee -a "$LOG"
  return "$rc"
}

report() {
  "$PY" benchmarks/summarize.py "$SCRATCH"/bench_*.json --env "$OUT_DIR/device.json" --steps "$STEPS" \
    --out "$OUT_DIR" > "$SCRATCH/digest.txt" 2>&1 || echo "summarize.py failed: $(cat "$SCRATCH/digest.txt")" | tee -a "$LOG"
}

bench() {  # bench NUMBER NAME LIMIT: one step of benchmarks/test_gpu_kernels.py, then the report so far
  run_step "$2" "$3" "$PY" -m pytest "benchmarks/test_gpu_kernels.py::test_$2" -v -rs -p no:cacheprovider \
    -o addopts="" --benchmark-enable --benchmark-json="$SCRATCH/bench_$1_$2.json" \
    --benchmark-columns=median,iqr,rounds --benchmark-sort=name
  report
}

if ! run_step preflight 30 "$PY" -m benchmarks.gpu_preflight --env "$OUT_DIR/device.json"; then
  echo "The GPU suite cannot run on this machine: see the preflight message above." | tee -a "$LOG"
  exit 2
fi
run_step precompile 100 "$PY" -m benchmarks.gpu_precompile
run_step cuda-tests 60 "$PY" -m pytest tests/test_triton.py tests/test_triton_launch_paths.py -m cuda -q -rfEs -p no:cacheprovider -o addopts=""
bench 1 core 40
bench 2 compiled 70
bench 3 paths 25
bench 4 kinds 45
bench 5 clade 25
bench 6 label_conv 25

{
  echo
  cat "$SCRATCH/digest.txt" 2>/dev/null
  echo
  echo "Steps (status, exit code, seconds, limit):"
  tail -n +2 "$STEPS" | sed 's/^/  /'
  if [ "$failed" -ne 0 ]; then
    echo "Result: a step FAILED (see its output in $LOG)."
  elif [ "$cut" -ne 0 ]; then
    echo "Result: no failure, but a step was cut by its limit (exit 124: its finished cases are kept) or its time budget."
  else
    echo "Result: every step finished."
  fi
  echo "Report: $OUT_DIR/gpu_summary.md (and gpu_summary.json, gpu_bench.json, device.json, gpu_steps.tsv, gpu_suite.log)"
} | tee -a "$LOG"
[ "$failed" -ne 0 ] && exit 1
[ "$cut" -ne 0 ] && exit 3
exit 0
