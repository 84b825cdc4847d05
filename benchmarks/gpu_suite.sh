#!/usr/bin/env bash
# The GPU check, on a CUDA machine with nothing but this repository and a PyTorch + Triton install (no pip needed):
# runs the CUDA tests and the kernel benchmarks from the checkout through PYTHONPATH and writes
#   device.txt, cuda_tests.log, gpu_bench.log, gpu_bench_{fp32,bf16}.json, gpu_bench.json (merged), gpu_summary.md
# to $OUT when set, else benchmarks/results/. Budget: about 8 minutes on one H100.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-benchmarks/results}"
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset TRITON_INTERPRET

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT_DIR/device.txt"

# CUDA tests, realistic shapes first (marked cuda), then the interpreter-sized matrix on the GPU; each half has its
# own time limit (every kernel variant compiles on first use, so the matrix may not finish: the log says how far).
: > "$OUT_DIR/cuda_tests.log"
timeout 100 python -m pytest tests/test_triton.py -m "cuda" -q -p no:cacheprovider -o addopts="" \
  2>&1 | tee -a "$OUT_DIR/cuda_tests.log"
tests_rc=${PIPESTATUS[0]}
timeout 120 python -m pytest tests/test_triton.py -m "not slow and not cuda" -q -p no:cacheprovider -o addopts="" \
  2>&1 | tee -a "$OUT_DIR/cuda_tests.log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || tests_rc=$rc

# Two runs (fp32, bf16), each with its own JSON and time limit: a run cut short loses only its half.
bench_rc=0
: > "$OUT_DIR/gpu_bench.log"
for dtype in fp32 bf16; do
  timeout 130 python -m pytest benchmarks/test_gpu_kernels.py -q -p no:cacheprovider -o addopts="" -k "$dtype" \
    --benchmark-enable --benchmark-json="$OUT_DIR/gpu_bench_$dtype.json" --benchmark-columns=median,iqr \
    2>&1 | tee -a "$OUT_DIR/gpu_bench.log"
  rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || bench_rc=$rc
done

# One merged JSON for benchmarks/report.py --gpu, and its markdown summary.
python - "$OUT_DIR" <<'PY'
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
parts = [json.loads(p.read_text()) for p in sorted(out.glob("gpu_bench_*.json"))]
if parts:
    merged = dict(parts[0], benchmarks=[b for part in parts for b in part["benchmarks"]])
    (out / "gpu_bench.json").write_text(json.dumps(merged))
PY
if [ -f "$OUT_DIR/gpu_bench.json" ]; then
  python benchmarks/summarize.py "$OUT_DIR/gpu_bench.json" > "$OUT_DIR/gpu_summary.md" 2>&1
  cat "$OUT_DIR/gpu_summary.md"
fi
echo "cuda tests exit code: $tests_rc, benchmarks exit code: $bench_rc"
exit $(( tests_rc != 0 || bench_rc != 0 ))
