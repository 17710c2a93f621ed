"""Where the text condition of a training batch should come from: stored encoder features or the captions.

Usage:
    .venv/bin/python benchmarks/caption_features.py --captions data/scenes-train/captions.jsonl [--batch 32]

Times, per batch of captions drawn at random from the manifest: (a) reading stored MiniLM features (hidden
states float16 (N, T, 384), masks, pooled vectors) back from a safetensors file, (b) encoding the captions
with the frozen encoder every time, (c) the caption memo that training uses (``nextscale.text.cache``),
once warm. Also prints the disk size the stored features would need for the whole manifest.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nextscale.text import load_default_text_encoder
from nextscale.text.cache import CachedTextEncoder


def timed(function, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=Path, required=True, help="a captions.jsonl manifest")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--stored", type=int, default=4096, help="captions whose features are stored for (a)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    captions = [json.loads(line)["caption"] for line in args.captions.read_text().splitlines() if line.strip()]
    encoder = load_default_text_encoder()
    rng = random.Random(0)
    stored = captions[: args.stored]
    batches = [[rng.randrange(len(stored)) for _ in range(args.batch)] for _ in range(args.batches)]

    features = [encoder.encode(stored[i : i + 256]).pad_to(48) for i in range(0, len(stored), 256)]
    payload = {
        "hidden": torch.cat([f.hidden for f in features]).half(),
        "mask": torch.cat([f.mask for f in features]).to(torch.int8),
        "pooled": torch.cat([f.pooled for f in features]).half(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "features.safetensors"
        save_file(payload, str(path))
        size_per_caption = path.stat().st_size / len(stored)
        handle = safe_open(str(path), framework="pt")

        def read_stored(indices):
            hidden = torch.stack([handle.get_slice("hidden")[i : i + 1][0] for i in indices]).float()
            mask = torch.stack([handle.get_slice("mask")[i : i + 1][0] for i in indices]).long()
            pooled = torch.stack([handle.get_slice("pooled")[i : i + 1][0] for i in indices]).float()
            return hidden, mask, pooled

        queue = iter(batches * 3)
        stored_s = timed(lambda: read_stored(next(queue)), args.batches)
    queue = iter(batches * 3)
    fresh_s = timed(lambda: encoder.encode([stored[i] for i in next(queue)]), args.batches)
    cache = CachedTextEncoder(encoder)
    for batch in batches:
        cache.encode([stored[i] for i in batch])  # warm up: every caption of these batches seen once
    queue = iter(batches * 3)
    cached_s = timed(lambda: cache.encode([stored[i] for i in next(queue)]), args.batches)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(f"batch of {args.batch} captions ({len(captions)} in the manifest, {len(set(captions))} distinct):")
    print(f"  (a) read stored fp16 features : {stored_s * 1e3:7.2f} ms")
    print(f"  (b) encode every time         : {fresh_s * 1e3:7.2f} ms  ({fresh_s / stored_s:.1f}x (a))")
    print(f"  (c) caption memo, warm        : {cached_s * 1e3:7.2f} ms  ({cached_s / stored_s:.2f}x (a))")
    total_mb = size_per_caption * len(captions) / 2**20
    print(
        f"stored features: {size_per_caption / 1024:.1f} KiB per caption (T padded to 48): {total_mb:.0f} MiB for all"
    )


if __name__ == "__main__":
    main()
