"""AdamW with weight decay chosen by a rule, and the per-step schedule applied to its groups.

The rule (STYLE rule 11): decay the weight matrices that multiply a layer's input, and nothing that
sets where or how strongly a signal passes. Concretely a parameter is decayed when

1. it has two or more dimensions, and
2. it is the ``weight`` of a Linear, convolution or Embedding layer (free-standing ``nn.Parameter``
   tensors such as start/position vectors, learned temperatures or AdaLN offsets are not), and
3. that layer does not encode a position (no word of its module name, split at "." and "_", is "pos",
   "position", "positional", "lvl" or "level"):
   a position or scale-level table is a coordinate system, not a feature detector.

Biases, norm gains and every 1-D tensor are never decayed. On the VAR transformer this reproduces the
official name list exactly (``word_embed``, ``class_emb``, ``mat_qkv``, ``proj``, ``fc1``, ``fc2``, every
``ada_lin`` and ``head`` weight decayed; ``pos_start``, ``pos_1LC``, ``lvl_embed``, ``scale_mul``,
``q_bias``/``v_bias``, ``ada_gss`` and biases not), which tests/training/test_optim.py checks.

References: VAR ``utils/lr_control.py`` (``filter_params``), nanoGPT ``configure_optimizers`` (ndim rule).
"""

from __future__ import annotations

import torch
from torch import nn

from nextscale.training.schedules import lr_factor, weight_decay_at

_DECAYABLE_LAYERS = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)
_POSITIONAL_WORDS = frozenset({"pos", "position", "positional", "lvl", "level"})


def should_decay(module_name: str, module: nn.Module, param_name: str, param: torch.Tensor) -> bool:
    """True if weight decay applies to ``module.<param_name>`` (see the module docstring for the rule).

    Args:
        module_name: dotted name of the owning module inside the model ("" for the root).
        module: the owning module.
        param_name: the parameter's attribute name on that module ("weight", "bias", "pos_embed", ...).
        param: the tensor.
    """
    if param.ndim < 2 or param_name != "weight" or not isinstance(module, _DECAYABLE_LAYERS):
        return False
    words = module_name.replace(".", "_").lower().split("_")
    return _POSITIONAL_WORDS.isdisjoint(words)


def split_decay(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of trainable parameters with and without weight decay, in ``named_parameters`` order."""
    decay, no_decay = [], []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full = f"{module_name}.{param_name}" if module_name else param_name
            (decay if should_decay(module_name, module, param_name, param) else no_decay).append(full)
    return decay, no_decay


def build_adamw(
    model: nn.Module,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` in two groups, decayed and not.

    The groups start with weight decay 0 and carry ``peak_lr`` and ``decay`` keys; :func:`apply_schedule`
    writes the step's lr and weight decay into them (as the official trainer does every step). The fused CUDA kernel
    runs when every parameter is on CUDA.

    Args:
        model: the plain (unwrapped) module; parameter identity is shared with its DDP/FSDP wrapper.
        lr: the peak learning rate.
        betas: Adam betas (VAR: (0.9, 0.95)).
        eps: Adam epsilon.
    """
    decay_names, _ = split_decay(model)
    decay_set = set(decay_names)
    decayed, not_decayed = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decayed if name in decay_set else not_decayed).append(param)
    if not decayed and not not_decayed:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    fused = all(p.is_cuda for group in (decayed, not_decayed) for p in group)
    groups = [
        {"params": decayed, "weight_decay": 0.0, "peak_lr": lr, "decay": True},
        {"params": not_decayed, "weight_decay": 0.0, "peak_lr": lr, "decay": False},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=0.0, fused=fused or None)


def apply_schedule(
    optimizer: torch.optim.Optimizer,
    step: int,
    total_steps: int,
    warmup_steps: int,
    schedule: str = "lin0",
    end_factor: float = 0.01,
    weight_decay: float = 0.0,
    weight_decay_end: float | None = None,
    warmup_start: float = 0.005,
) -> tuple[float, float]:
    """Write the lr and weight decay of ``step`` into every group; returns (lr, weight decay) of a decayed group."""
    factor = lr_factor(step, total_steps, warmup_steps, schedule, warmup_start, end_factor)
    wd = weight_decay_at(step, total_steps, weight_decay, weight_decay_end)
    lr = 0.0
    for group in optimizer.param_groups:
        group["lr"] = group.get("peak_lr", group["lr"]) * factor
        group["weight_decay"] = wd if group.get("decay", True) else 0.0
        lr = max(lr, group["lr"])
    return lr, wd
