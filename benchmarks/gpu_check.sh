#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: install the package with the cuda extra, build the
# CUDA module (AILUT_CUDA=ON fails loudly without nvcc), run the CUDA tests and the GPU
# transform benchmark, and print a summary.
#
#   bash benchmarks/gpu_check.sh [PYTHON]      (default python3; a venv is made in .venv-gpu)
#
# Set AILUT_GPU_VENV to reuse an existing environment instead.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
venv=${AILUT_GPU_VENV:-.venv-gpu}
log=$(mktemp -d)
status=0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv"
fi
"$venv/bin/pip" install -q --upgrade pip
if ! AILUT_CUDA=ON "$venv/bin/pip" install -q -e ".[test,cuda]" >"$log/install.log" 2>&1; then
  tail -40 "$log/install.log"
  echo "SUMMARY: install/build with CUDA FAILED"
  exit 1
fi
"$venv/bin/python" - <<'PY'
import jax
from ailut_jax.ops._native import load_module, native_available
print("jax", jax.__version__, "devices", jax.devices())
print("CUDA module:", load_module("CUDA"), "native on gpu:", native_available("gpu"))
PY

AILUT_TEST_GPU=1 "$venv/bin/python" -m pytest -q -rs tests/test_cuda.py 2>&1 | tee "$log/tests.log" | tail -15
tests_rc=${PIPESTATUS[0]}
[ "$tests_rc" -eq 0 ] || status=1

"$venv/bin/python" benchmarks/bench_transform.py --repeats 20 \
  --out benchmarks/results/transform_gpu.json 2>&1 | tee "$log/bench.log" | tail -8
bench_rc=${PIPESTATUS[0]}
[ "$bench_rc" -eq 0 ] || status=1

echo
echo "SUMMARY"
echo "  CUDA tests: $(tail -1 "$log/tests.log") (exit $tests_rc)"
echo "  benchmark (exit $bench_rc):"
grep '^|' "$log/bench.log" | sed 's/^/    /'
exit $status
