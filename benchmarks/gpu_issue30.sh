#!/usr/bin/env bash
# Issue 30's GPU run in one device call, prepared on the CPU: mc_graph's tests (the CUDA
# graph capture, which the CPU cannot run), the kernels re-checked and their table,
# mc_predict and mc_graph against the loop with `auto` on CUDA, and the exported Monte
# Carlo program's latency (torch.export eager and under torch.compile; onnxruntime's rows
# only where its CUDA provider is installed). Run from the repository root on the device
# machine: `bash benchmarks/gpu_issue30.sh`; each step's output lands in $OUT (or
# /tmp/gpu). The device image's python3 holds torch and Triton; dropkit comes from src/.
set -o pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu}
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  date -u; } 2>&1 | tee "$out/machine.txt"
timeout 60 python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_graphed.py 2>&1 \
    | tee "$out/test_graphed.txt"
timeout 150 python3 benchmarks/gpu_check.py 2>&1 | tee "$out/gpu_check.txt"
timeout 200 python3 benchmarks/bench_mc_predict.py --device cuda 2>&1 | tee "$out/mc_predict.txt"
timeout 120 python3 benchmarks/bench_export.py --device cuda --compile 2>&1 \
    | tee "$out/export.txt"
