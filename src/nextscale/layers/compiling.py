"""``torch.compile`` with room for the shape variants inference meets, and no silent fall back to eager.

Dynamo keeps at most ``recompile_limit`` (8 by default) compiled variants of one function. Sampling and training
meet more than that for the functions compiled here: batch 1 or more, the first scale's single token, each
sequence length of a block mask, each dtype, grad mode and device. Past the limit a ``fullgraph`` function
raises, and any other one silently runs eagerly from then on. For FlexAttention that fallback is not just
slower: eager flex materialises the whole (l, L) score matrix, gigabytes at 1024 px. So the functions are
compiled with ``fullgraph=True`` and, when one reaches torch's limit, compiled on under :data:`RECOMPILE_LIMIT`
(the limit is raised only around that call: patching it at every call costs 40 us).

References:
    PyTorch, "Dealing with recompilations" (``torch._dynamo.config.recompile_limit``, ``fullgraph``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

# How many compiled variants of one function are allowed (torch's default: 8). See each caller for how many
# variants it meets.
RECOMPILE_LIMIT = 64


def compile_with_room(function: Callable, **options: Any) -> Callable:
    """``torch.compile(function, fullgraph=True, **options)`` that compiles up to :data:`RECOMPILE_LIMIT` variants.

    Past that limit too the call raises (``FailOnRecompileLimitHit``) instead of running eagerly.
    """
    import torch._dynamo  # on first use: importing dynamo takes a second

    compiled = torch.compile(function, fullgraph=True, **options)
    # What a fullgraph function raises at the limit, before compiling (older torch runs it eagerly instead).
    limit_hit = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", ())
    # The limit's name: "recompile_limit" in newer torch, "cache_size_limit" in older releases (an alias now).
    limit_key = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return compiled(*args, **kwargs)
        except limit_hit:
            with torch._dynamo.config.patch(**{limit_key: RECOMPILE_LIMIT}):
                return compiled(*args, **kwargs)

    return call
