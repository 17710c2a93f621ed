#!/usr/bin/env bash
# Tiny end-to-end run on a CPU: train-tokenizer -> tokenize -> train -> export -> sample -> edit -> evaluate,
# on the 200 Fashion-MNIST images bundled for tests. About a minute on 2 cores. Usage: scripts/smoke.sh [WORKDIR]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d)}"
ns="${NEXTSCALE:-$repo/.venv/bin/nextscale}"
data="fashion-mnist:$repo/tests/assets/fashion_mnist"
cd "$work"
"$ns" train-tokenizer --config "$repo/configs/tiny_tokenizer.json" --data "$data" --run-dir tok --no-progress
"$ns" tokenize --tokenizer tok --data "$data" --out tokens --overwrite --no-progress
"$ns" train --config "$repo/configs/tiny_transformer.json" --tokenizer tok --tokens tokens --data "$data" \
    --run-dir var --no-progress
"$ns" export --run var --out model
"$ns" sample --model model --class 0 7 9 --num 2 --seed 0 --cfg 2 --top-k 32 --top-p 0.95 --out samples.png \
    --save-tokens tokens.safetensors
"$ns" edit --model model --image "$repo/src/nextscale/assets/demo/examples/example.png" --box 0.25 0.25 0.75 0.75 \
    --class 9 --seed 0 --out edited.png --side-by-side edit-compare.png
"$ns" evaluate --model model --num 20 --batch-size 10 --reference "$data" --baseline --out report.json
echo "smoke run finished in $work"
