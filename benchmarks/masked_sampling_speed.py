"""What STAR's masked sampling costs over plain sampling, side by side in one run (plain is the reference).

Usage:
    .venv/bin/python benchmarks/masked_sampling_speed.py [--depth 16] [--batch 1 8] [--repeats 3] [--threads 2]

A STAR model of the given depth with random weights and a masked-sampler head, on the released 256-px schedule
(10 scales; the head samples from scale 9, the 16 x 16 map, as the official ``sample_from_idx``), random text
features of the official width (77 x 1024), cfg 4, top-k 600, top-p 0.8. Each call draws the tokens only (no
decode: the decoder costs the same either way). Calls alternate between the paths after a warm-up each; the best
of ``--repeats`` is printed with the ratio to plain sampling and the head's share of the work (GFLOP counted from
the shapes: the head runs ``sampler_depth`` blocks over 1 + 256 tokens per step that uses it, 3 steps of plan
1024, 8 of head-only).
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import add_machine_arguments, machine_from_arguments, machine_name, synchronize

from nextscale.presets import var
from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.sampler import ScaleSampler
from nextscale.scales import SIDES_256
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

PATHS = {
    "plain": {},
    "masked, plan 1024": {"masked_sampling": True, "masked_plan": "1024"},
    "masked, head-only": {"masked_sampling": True, "masked_plan": "head-only"},
}
HEAD_STEPS = {"plain": 0, "masked, plan 1024": 3, "masked, head-only": 8}


def head_gflop(config: TextTransformerConfig, rows: int, tokens: int) -> float:
    """One head pass: fuse (2C -> C), per block qkv + proj (4 C^2) and FFN (2 * 4 C^2) per token plus attention
    (2 n^2 C), and the output layer (C V); multiply-adds count 2."""
    width, n = config.embed_dim, tokens + 1
    block = (4 + 8) * width * width * n + 2 * n * n * width
    total = 2 * width * width * n + config.sampler_depth * block + width * config.vocab_size * tokens
    return 2 * total * rows / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=16)
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    add_machine_arguments(parser)
    args = parser.parse_args()
    device = machine_from_arguments(args)
    torch.manual_seed(0)
    config = TextTransformerConfig.from_depth(args.depth, scale_sides=SIDES_256, sampler_head=True)
    model = TextScaleTransformer(config).eval().to(device)
    tokenizer = MultiScaleVQVAE(var(16)[0]).eval().to(device)  # VAR's 256 px tokenizer (only its codebook runs)
    sampler = ScaleSampler(tokenizer, model)
    print(f"machine: {machine_name(device)}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}")
    print(f"STAR d{args.depth} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters with the head), "
          f"schedule {SIDES_256}, head from scale {config.sampler_from_scale}")  # fmt: skip
    for batch in args.batch:
        gen = torch.Generator().manual_seed(1)
        text = TextCondition(torch.randn(batch, 77, 1024, generator=gen), torch.ones(batch, 77, dtype=torch.long),
                             torch.randn(batch, 1024, generator=gen))  # fmt: skip
        null = TextCondition(torch.randn(1, 77, 1024, generator=gen), torch.ones(1, 77, dtype=torch.long),
                             torch.randn(1, 1024, generator=gen))  # fmt: skip
        condition = TextCondition(text.hidden, text.mask, text.pooled, null).to(device)
        best = {}
        for round_idx in range(args.repeats + 1):  # round 0 warms every path up
            for name, knobs in PATHS.items():
                settings = SamplingConfig(cfg=4.0, top_k=600, top_p=0.8, **knobs)
                generator = torch.Generator(device).manual_seed(0)
                synchronize(device)
                start = time.perf_counter()
                with torch.inference_mode():
                    sampler.sample(condition, config=settings, generator=generator)
                synchronize(device)
                if round_idx:
                    best[name] = min(best.get(name, float("inf")), time.perf_counter() - start)
        per_pass = head_gflop(config, 2 * batch, 256)
        for name, seconds in best.items():
            print(
                f"B={batch:<3} {name:<18} {seconds:7.2f} s  {batch / seconds:6.2f} img/s  "
                f"{seconds / best['plain']:5.2f}x plain  head: {HEAD_STEPS[name]} passes, "
                f"{HEAD_STEPS[name] * per_pass:6.1f} GFLOP"
            )


if __name__ == "__main__":
    main()
