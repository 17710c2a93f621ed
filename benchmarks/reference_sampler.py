"""The reference path of the sampling benchmarks: what the official VAR sampler does, step for step.

Official ``VAR.autoregressive_infer_cfg`` + ``VQVAE.fhat_to_img`` (github.com/FoundationVision/VAR,
``models/var.py``, ``models/basic_var.py``), written over nextscale's modules so that both run the same
weights: eager float32; at every scale every block evaluates its AdaLN projection ``ada_lin(cond)`` anew; the
KV cache grows by ``torch.cat`` (each layer's keys and values are copied at every scale); the decoder runs on
contiguous NCHW tensors. The sampling math (CFG ramp, top-k/top-p, one multinomial draw per scale, the
quantizer's f-hat update) is the shared code the parity tests prove equal to the official functions, so this
loop draws the same tokens as ``ScaleSampler`` for the same seed; ``tests/sampling/test_reference_sampler.py``
holds it to that.
"""

from __future__ import annotations

import torch

from nextscale.sampling.guidance import SamplingConfig
from nextscale.sampling.logits import classifier_free_guidance, filter_logits, sample_tokens
from nextscale.transformer.conditioning import ClassCondition


class ConcatKVCache:
    """The official cache: per layer, the keys/values of every scale so far, concatenated anew at each scale."""

    def __init__(self, num_layers: int, batch_size: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * num_layers
        self.values: list[torch.Tensor | None] = [None] * num_layers
        self.batch_size, self.length = batch_size, 0

    def update(self, layer_idx: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys[layer_idx] is None:
            self.keys[layer_idx], self.values[layer_idx] = key, value
        else:
            self.keys[layer_idx] = torch.cat((self.keys[layer_idx], key), dim=2)
            self.values[layer_idx] = torch.cat((self.values[layer_idx], value), dim=2)
        return self.keys[layer_idx], self.values[layer_idx]

    def advance(self, num_tokens: int) -> None:
        self.length += num_tokens


@torch.no_grad()
def reference_sample(
    tokenizer, transformer, labels: list[int], config: SamplingConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample like the official code (class model, guidance on): returns tokens (B, L) and images in [0, 1]."""
    schedule, quantizer = transformer.schedule, tokenizer.quantizer
    sides, num_scales = schedule.sides, schedule.num_scales
    device = transformer.pos_embed.device
    condition = ClassCondition(torch.tensor(labels, device=device), transformer.config.null_class_id)
    batch, code_dim = len(labels), tokenizer.config.code_dim
    cond = transformer.embed_condition(condition.with_unconditional().labels)  # (2B, C): sos = cond_BD
    cache = ConcatKVCache(transformer.config.depth, 2 * batch)
    x = transformer.scale_input(0, cond, None)
    f_hat = torch.zeros(batch, code_dim, sides[-1], sides[-1], device=device)
    tokens = []
    for scale_idx, side in enumerate(sides):
        settings = config.settings(scale_idx, num_scales)
        # Official: cond_BD_or_gss = shared_ada_lin(cond_BD) and every block's ada_lin, at every scale.
        block_condition = transformer.block_condition(cond)  # no memo: every block projects anew
        for block in transformer.blocks:
            x = block(x, block_condition, None, cache)
        cache.advance(x.shape[1])
        logits = transformer._logits(x, cond)
        logits = classifier_free_guidance(logits[:batch], logits[batch:], settings.cfg_weight)
        logits = filter_logits(logits, settings.top_k, settings.top_p, settings.temperature)
        tokens_Bl = sample_tokens(logits, generator)[:, :, 0]
        tokens.append(tokens_Bl)
        h_BChw = quantizer.lookup(tokens_Bl).transpose(1, 2).reshape(batch, code_dim, side, side)
        f_hat, next_BChw = quantizer.next_input(scale_idx, f_hat, h_BChw)
        if scale_idx + 1 < num_scales:
            next_latent = next_BChw.view(batch, code_dim, -1).transpose(1, 2)
            x = transformer.scale_input(scale_idx + 1, cond, next_latent).repeat(2, 1, 1)
    images = tokenizer.decoder(tokenizer.post_quant_conv(f_hat.contiguous())).clamp_(-1, 1).add_(1).mul_(0.5)
    return torch.cat(tokens, dim=1), images
