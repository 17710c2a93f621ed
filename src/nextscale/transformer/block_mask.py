"""The block-causal training mask in the two forms the attention kernel takes, and the runtime choice between them.

A teacher-forced forward runs every position at once under a mask built from per-position levels: a query at
level a may attend to a key at level b iff b <= a. For VAR and STAR the level is the scale index (the
block-causal mask of ``ScaleSchedule``); for the raster baseline it is the position itself (plain causal).

- "dense": an additive float bias (1, 1, L', L') (0 = allowed, -inf = blocked) for SDPA. At 1024 px
  (L = 9,451 with SIDES_1024) it holds 357 MB in float32 and every attention call reads all of it.
- "flex": a FlexAttention ``BlockMask``: per 128 x 128 tile of (queries, keys), whether the tile is skipped,
  computed without a mask (full) or computed with the elementwise rule (partial). It takes a few kB and
  lets the kernel skip the blocked tiles.

Worked example (levels ``0 1 1 1 1 2 ... 2`` of sides (1, 2, 4), tiles of 2 positions): query tile [2, 4) has
levels {1}, key tile [0, 2) has {0, 1}: every key level <= every query level, so the tile is full; key tile
[4, 6) has {1, 2}: some pairs are allowed, some not, so it is partial; key tile [6, 8) has {2}: no key level
is <= 1, so the tile is skipped. In general (no ordering of the levels assumed): a tile is full iff
max(key levels) <= min(query levels), and skipped iff min(key levels) > max(query levels).

References:
    Dong et al., "Flex Attention: A Programming Model for Generating Optimized Attention Kernels",
    arXiv 2412.05496; PyTorch ``torch.nn.attention.flex_attention`` (``BlockMask``, ``create_block_mask``).
    Tian et al., VAR (arXiv 2404.02905), Fig. 4 (block-wise causal mask).
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch.nn.attention.flex_attention import BlockMask

ATTENTION_MASKS = ("dense", "flex")
# FlexAttention's tile (its default sparse block size): the kernels iterate over blocks of this many positions.
FLEX_BLOCK_SIZE = 128
Model = TypeVar("Model", bound="BlockCausalTraining")


def dense_bias(levels: torch.Tensor) -> torch.Tensor:
    """Additive bias of the level rule: (L,) int levels -> (1, 1, L, L) float32, 0 where level(key) <=
    level(query), -inf elsewhere (equal to ``ScaleSchedule.attention_bias`` for a schedule's level ids)."""
    blocked = levels[None, :] > levels[:, None]  # (L, L): True where the key is at a finer level
    return torch.zeros(blocked.shape, device=levels.device).masked_fill_(blocked, float("-inf"))[None, None]


def _ordered(tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q_tiles, K_tiles) bool -> per query tile the count (1, 1, Q_tiles) and the key-tile indices, listed
    first and in increasing order (1, 1, Q_tiles, K_tiles): the layout ``create_block_mask`` produces."""
    counts = tiles.sum(-1, dtype=torch.int32)
    indices = torch.argsort(tiles.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
    return counts[None, None], indices[None, None]


@torch.compiler.disable  # runs eagerly (once per prefix), also when called from a compiled forward
def block_causal_mask(levels: torch.Tensor, block_size: int = FLEX_BLOCK_SIZE) -> BlockMask:
    """The BlockMask of the level rule, built tile by tile (the L x L mask is never formed).

    Args:
        levels: (L,) int levels of the positions, on the device the attention runs on.
        block_size: tile side (FlexAttention's sparse block size).

    Returns:
        A BlockMask of shape (1, 1, L, L), broadcast over batch and heads.
    """
    length = levels.shape[0]
    tiles = -(-length // block_size)
    # Positions past L (the last tile's padding) get a level above every real one: as keys they are blocked for
    # every real query, and the mask rule can index them safely (the kernel evaluates whole tiles).
    padded = torch.full((tiles * block_size,), int(levels.max()) + 1, dtype=levels.dtype, device=levels.device)
    padded[:length] = levels
    low = padded.view(tiles, block_size).amin(1)  # (tiles,) smallest level of each tile
    high = levels.new_full((tiles * block_size,), int(levels.min()))
    high[:length] = levels
    high = high.view(tiles, block_size).amax(1)  # (tiles,) largest real level of each tile
    last_partial = length % block_size != 0
    any_allowed = low[None, :] <= high[:, None]  # (query tile, key tile): some key level <= some query level
    full = high[None, :] <= low[:, None]  # every key level <= every query level
    if last_partial:  # a tile holding padding is never full: as create_block_mask, where padding is blocked
        full[-1, :] = False
        full[:, -1] = False
    partial = any_allowed & ~full

    def mask_mod(batch, head, q_idx, kv_idx):
        return padded[kv_idx] <= padded[q_idx]

    kv_num_blocks, kv_indices = _ordered(partial)
    full_kv_num_blocks, full_kv_indices = _ordered(full)
    return BlockMask.from_kv_blocks(
        kv_num_blocks,
        kv_indices,
        full_kv_num_blocks,
        full_kv_indices,
        BLOCK_SIZE=block_size,
        mask_mod=mask_mod,
        seq_lengths=(length, length),
    )


class BlockCausalTraining:
    """Mixin of the transformers whose teacher-forced forward runs under the level rule: the mask's form is a
    runtime choice (:meth:`use_attention_mask`), not a config field, so saved configs and state dicts do not
    change with it. The dense bias is built on first use, so a "flex" model never allocates it.

    A model (an ``nn.Module`` with a ``config`` that has ``attn_dropout``) calls :meth:`init_training_mask` in
    its constructor and :meth:`training_mask` in its forward.
    """

    attention_mask: str = "dense"

    def init_training_mask(self, levels: torch.Tensor) -> None:
        """Record the (L,) levels of the positions (on the CPU; masks are built on the device that asks)."""
        self.mask_levels = levels
        self.block_masks: dict[tuple[int, torch.device], BlockMask] = {}
        # Derived from the levels, so never saved; None until the dense form is first needed.
        self.register_buffer("dense_attn_bias", None, persistent=False)

    def use_attention_mask(self: Model, mode: str) -> Model:
        """Choose the form of the training mask, and return the model.

        Args:
            mode: "dense" (an L x L float bias for SDPA, built here so that wrappers such as DDP and
                torch.compile see an ordinary buffer) or "flex" (FlexAttention block masks; drops the dense
                bias). Flex runs compiled on CUDA; on CPU it runs eagerly and has no backward pass.
        """
        if mode not in ATTENTION_MASKS:
            raise ValueError(f"attention mask must be one of {ATTENTION_MASKS}, got {mode!r}")
        if mode == "flex" and self.config.attn_dropout > 0:
            raise ValueError(
                f"flex attention has no dropout on attention weights, but this model has attn_dropout="
                f"{self.config.attn_dropout}; use the dense mask, or a config with attn_dropout=0"
            )
        self.attention_mask = mode
        if mode == "flex":
            self.dense_attn_bias = None
        else:
            self.attn_bias  # noqa: B018 (built now, see above)
        return self

    @property
    def attn_bias(self) -> torch.Tensor:
        """The dense (1, 1, L, L) float bias, built on the model's device on first use."""
        if self.dense_attn_bias is None:
            device = next(self.parameters()).device
            self.dense_attn_bias = dense_bias(self.mask_levels.to(device))
        return self.dense_attn_bias

    def training_mask(self, prefix: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | BlockMask:
        """The mask of the first ``prefix`` positions: a (1, 1, L', L') bias in ``dtype``, or a BlockMask
        (cached per prefix and device; progressive training uses a few prefixes)."""
        if self.attention_mask == "dense":
            return self.attn_bias[:, :, :prefix, :prefix].to(dtype)
        key = (prefix, torch.device(device))
        if key not in self.block_masks:
            self.block_masks[key] = block_causal_mask(self.mask_levels[:prefix].to(device))
        return self.block_masks[key]

    def kept_training_mask(self, positions: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The mask among a subset of positions (token dropping): the dense (1, 1, n, n) bias of their levels, in
        ``dtype`` on their device, equal to the full mask's rows and columns at ``positions`` (n,). Dense in either
        form: the kept set changes every step, and this bias is at most (L - dropped)^2."""
        return dense_bias(self.mask_levels.to(positions.device)[positions]).to(dtype)
