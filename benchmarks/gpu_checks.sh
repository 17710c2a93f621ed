#!/usr/bin/env bash
# Every GPU check of the performance work in one prepared run, sized for a 15-minute device lease:
#   device tool: run(command="bash benchmarks/gpu_checks.sh", timeout_s=580)
# It uses the machine's own python3 (PyTorch with CUDA; safetensors, numpy, Pillow and tqdm are there too) over
# this source tree, gives each step a time limit so one slow step cannot eat the lease, and writes each step's
# output to $OUT/<step>.txt (the files that come back). Record the figures in benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONPATH=src:benchmarks PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS, log to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  echo "== $name: exit $? after ${SECONDS} s in all"
  tail -n 25 "$OUT/$name.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } | tee "$OUT/machine.txt"

# Most important first (each step has its own limit, so a slow one cannot eat the lease).
# B=1 latency of d16 with CFG: eager fp32 (reference) vs CUDA graphs, the bf16 fast path (weights cast once) eager
# and with graphs, and the fused elementwise kernels (fp32 graphs, bf16 eager, bf16 graphs), decode included
# (target >= 5x at B=1); B=64 throughput. The fused paths' first calls compile their kernels.
step cuda_graphs 230 python3 benchmarks/cuda_graph_speed.py --batch 1 64 --fast --decode
# The gpu-marked tests: CUDA-graph and fused-kernel tokens against the eager loop, the FlexAttention mask.
step pytest_gpu 110 python3 -m pytest -q -m gpu -p no:cacheprovider tests/layers/test_fused.py tests/text/test_caption_cache.py \
  tests/sampling/test_cuda_graphs.py tests/transformer/test_flex_attention.py tests/sampling/test_speed_paths.py
# One d16 training step at VAR's 256 px shapes, compiled: tokens/s and MFU against the datasheet peaks.
step train_step 120 python3 benchmarks/train_step_speed.py --device cuda --depth 16 --batch 64 --shapes imagenet256 \
  --compile --steps 3
# The official sampler's steps vs the exact fp32 path vs auto (bf16) on the GPU, decode included.
step sampling_paths 110 python3 benchmarks/sampling_paths.py --device cuda --batch 1 64 --repeats 2 \
  --paths reference exact auto
# Block-sparse FlexAttention training mask vs the dense L x L bias at 1024 px (a 357 MB bias).
step attention_mask 60 python3 benchmarks/attention_mask_speed.py --device cuda --image-size 1024 --batch 2
echo "all steps done in ${SECONDS} s; logs in $OUT"
