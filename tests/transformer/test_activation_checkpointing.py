"""Activation checkpointing (``use_activation_checkpointing``): the same loss and bit-identical gradients as
keeping every activation, with drop-path, dropout and condition dropout all drawing, for the VAR, STAR and
raster transformers; and far fewer bytes held for the backward pass."""

import pytest
import torch
import torch.nn.functional as F

from nextscale.transformer import ScaleTransformer, TransformerConfig
from nextscale.transformer.conditioning import TextCondition
from nextscale.transformer.raster_config import RasterConfig
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_config import TextTransformerConfig
from nextscale.transformer.text_model import TextScaleTransformer

SIDES = (1, 2, 4)
RANDOM = dict(drop_path_rate=0.3, attn_dropout=0.1, dropout=0.1, cond_drop_rate=0.3)


def var_case(batch: int = 4):
    config = TransformerConfig.from_depth(
        3, embed_dim=64, num_heads=2, vocab_size=32, code_dim=8, num_classes=5, scale_sides=SIDES, **RANDOM
    )
    model = ScaleTransformer(config)
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 5, (batch,), generator=generator)
    teacher = torch.randn(batch, config.schedule.total_tokens - 1, 8, generator=generator)
    targets = torch.randint(0, 32, (batch, config.schedule.total_tokens), generator=generator)
    return model, (labels, teacher), targets


def text_case(batch: int = 4):
    config = TextTransformerConfig.from_depth(
        3, embed_dim=64, num_heads=2, vocab_size=32, code_dim=8, scale_sides=SIDES, text_dim=24, **RANDOM
    )
    model = TextScaleTransformer(config)
    generator = torch.Generator().manual_seed(1)

    def features(rows: int) -> TextCondition:
        hidden = torch.randn(rows, 5, 24, generator=generator)
        return TextCondition(hidden, torch.ones(rows, 5, dtype=torch.long), torch.randn(rows, 24, generator=generator))

    null = features(1)
    prompts = features(batch)
    condition = TextCondition(prompts.hidden, prompts.mask, prompts.pooled, null)
    teacher = torch.randn(batch, config.schedule.total_tokens - 1, 8, generator=generator)
    targets = torch.randint(0, 32, (batch, config.schedule.total_tokens), generator=generator)
    return model, (condition, teacher), targets


def raster_case(batch: int = 4):
    config = RasterConfig.from_depth(3, embed_dim=64, num_heads=2, num_classes=5, vocab_size=32, side=3, **RANDOM)
    model = RasterTransformer(config)
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 5, (batch,), generator=generator)
    tokens = torch.randint(0, 32, (batch, 9), generator=generator)
    return model, (labels, tokens), tokens


CASES = {"var": var_case, "star": text_case, "raster": raster_case}


def loss_and_grads(model, inputs, targets, recompute: bool, seed: int = 7):
    """One training forward + backward from a fixed global random state; returns (loss, grads, saved bytes)."""
    model.zero_grad(set_to_none=True)
    model.train().use_activation_checkpointing(recompute)
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    torch.manual_seed(seed)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(*inputs)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    loss.backward()
    grads = {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}
    return loss.detach(), grads, sum(saved)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_recomputed_blocks_give_identical_gradients(kind):
    torch.manual_seed(0)
    model, inputs, targets = CASES[kind]()
    loss, grads, kept_bytes = loss_and_grads(model, inputs, targets, recompute=False)
    loss_rc, grads_rc, recomputed_bytes = loss_and_grads(model, inputs, targets, recompute=True)
    assert torch.equal(loss, loss_rc)
    assert grads.keys() == grads_rc.keys() and len(grads) > 10
    for name, grad in grads.items():
        assert torch.equal(grad, grads_rc[name]), name
    # Each block keeps its input only: far fewer bytes wait for the backward pass.
    assert recomputed_bytes < 0.5 * kept_bytes
    # The draws really happen (a different seed changes the loss), so the identity above covers them.
    other, _, _ = loss_and_grads(model, inputs, targets, recompute=True, seed=8)
    assert not torch.equal(loss, other)


def test_no_checkpointing_without_autograd():
    torch.manual_seed(0)
    model, inputs, _ = var_case()
    model.eval().use_activation_checkpointing()
    with torch.no_grad():
        checkpointed = model(*inputs)
    assert torch.equal(checkpointed, model.use_activation_checkpointing(False)(*inputs).detach())
    assert model.recompute_blocks is False
