"""The transformer MLP shared by the VAR and STAR blocks.

References: Radford et al., GPT-2; VAR and STAR official ``models/basic_var.py`` (``FFN``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """fc1 (C -> hidden) -> GELU (tanh approximation) -> fc2 (hidden -> C) -> dropout."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, embed_dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, l, C) -> (B, l, C)."""
        hidden = F.gelu(self.fc1(x), approximate="tanh")
        return F.dropout(self.fc2(hidden), self.dropout, self.training)
