"""Translating official checkpoint key names into ours and back, by an explicit table, and the few facts that
official VAR and STAR state dicts store the same way (block keys, attention heads). Finding the state dict in a
file (trainer states, wrappers, key prefixes) is ``nextscale.official_files``.

Each row pairs an official name with ours; ``{i}`` stands for a block index. The table must be a
bijection on the released key lists (tests check it), so a key either translates or is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(\d+)"))


def count_blocks(state: Mapping[str, torch.Tensor]) -> int:
    """The number of distinct ``blocks.{i}.`` indices among the keys (the model depth)."""
    return len({int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key))})


def attention_heads(state: Mapping[str, torch.Tensor], embed_dim: int) -> tuple[int, bool]:
    """(num_heads, L2-normalised attention): cosine attention stores a (1, H, 1, 1) per-head temperature
    ``blocks.0.attn.scale_mul_1H11``; a model without one is taken to have heads of width 64."""
    temperature = state.get("blocks.0.attn.scale_mul_1H11")
    if temperature is None:
        return embed_dim // 64, False
    return temperature.shape[1], True


class KeyTable:
    """Official <-> nextscale parameter names.

    Args:
        rows: (official name, our name) pairs.
        model: the model family, for error messages ("VAR", "STAR").
    """

    def __init__(self, rows: Sequence[tuple[str, str]], model: str) -> None:
        self.model = model
        self._to_ours = [(_pattern(official), ours) for official, ours in rows]
        self._to_official = [(_pattern(ours), official) for official, ours in rows]

    def _translate(self, key: str, table: list[tuple[re.Pattern, str]], source: str) -> str:
        for pattern, target in table:
            match = pattern.fullmatch(key)
            if match:
                return target.replace("{i}", match.group(1)) if match.groups() else target
        raise ValueError(f"unknown {source} key {key!r}; not a {self.model} transformer parameter")

    def to_ours(self, key: str) -> str:
        return self._translate(key, self._to_ours, f"official {self.model}")

    def to_official(self, key: str) -> str:
        return self._translate(key, self._to_official, "nextscale")

    def load_into(self, model: nn.Module, params: Mapping[str, torch.Tensor]) -> nn.Module:
        """Load official parameters (buffers already checked and removed) into ``model`` strictly.

        Every entry must translate to one of the model's, with its shape, and every model entry must be given;
        otherwise one ValueError lists the problems. Returns the model in eval mode.
        """
        own = model.state_dict()
        converted, given, problems = {}, set(), []
        for key, value in params.items():
            ours = self.to_ours(key)
            given.add(ours)
            if ours not in own:
                problems.append(f"{key} has no counterpart in the inferred model")
            elif value.shape != own[ours].shape:
                problems.append(f"{key}: shape {tuple(value.shape)}, expected {tuple(own[ours].shape)}")
            else:
                converted[ours] = value.to(own[ours].dtype)
        missing = sorted(self.to_official(key) for key in set(own) - given)  # a misshapen entry is named once
        if missing:
            problems.append(f"missing entries {missing[:8]}")
        if problems:
            raise ValueError(
                f"official {self.model} state dict does not fit the inferred config: " + "; ".join(problems[:8])
            )
        model.load_state_dict(converted, strict=True)
        return model.eval()
