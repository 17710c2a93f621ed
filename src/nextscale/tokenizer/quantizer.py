"""Multi-scale residual vector quantization (VAR's tokenizer bottleneck).

A latent f (B, C, H, W) is coded as K token maps of growing side. At scale k the still-unexplained
residual is area-downsampled to side_k x side_k, every position takes its nearest code from ONE
codebook shared by all scales, the code map is bicubic-upsampled back to H x W, passed through a
residual conv "Phi", added to the running reconstruction f_hat and subtracted from the residual.

Every method mirrors the official ``VectorQuantizer2`` (FoundationVision/VAR ``models/quant.py``) op
by op, including memory layouts (an embedding lookup permuted to (B, C, h, w) is a channels-last view;
bicubic and conv kernels round differently on it than on a contiguous tensor), so indices, teacher-
forcing inputs and the sampler's f_hat agree with the official code to float32 rounding.

References:
    Tian et al., "Visual Autoregressive Modeling", NeurIPS 2024, Algorithms 1-2.
    Lee et al., "Autoregressive Image Generation using Residual Quantization", CVPR 2022.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextscale.tokenizer.config import TokenizerConfig


def phi_index_table(num_scales: int, num_phi: int) -> tuple[int, ...]:
    """Which Phi conv each scale uses, computed exactly like the official float64 NumPy code.

    Scale k sits at t = k / (K - 1) on [0, 1]; the n Phis sit at evenly spaced ticks (n == 4:
    1/(3n) .. 1 - 1/(3n); otherwise 1/(2n) .. 1 - 1/(2n)); each scale takes the nearest tick.
    Worked example, K = 10, n = 4: ticks 1/12, 13/36, 23/36, 11/12. Scale 2 (t = 2/9 = 8/36) is
    exactly 5/36 from ticks 0 and 1; float64 rounding makes tick 1 the nearer, so the table is
    (0, 0, 1, 1, 1, 2, 2, 3, 3, 3), not the "first on tie" answer (0, 0, 0, ...).

    Args:
        num_scales: K.
        num_phi: 0 = one Phi per scale, 1 = one shared Phi, n = n partially shared Phis.
    Returns:
        K Phi indices.
    """
    count = num_scales if num_phi == 0 else num_phi
    # The official code writes the tick ends as 1/3/n and 1/2/n; the same float64 expressions are kept
    # on purpose, since the ties above are decided by their rounding.
    if count == 4:
        ticks = np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count)
    else:
        ticks = np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count)
    # The official code divides by K - 1. A one-scale schedule (never used there; the raster baseline's) is the
    # finest map, t = 1: with the Fashion-MNIST tokenizer the finest Phi reconstructs at 18.4 dB, the coarsest 15.2.
    positions = [k / (num_scales - 1) if num_scales > 1 else 1.0 for k in range(num_scales)]
    return tuple(int(np.argmin(np.abs(ticks - t))) for t in positions)


class Phi(nn.Module):
    """Residual conv mix Phi(h) = (1 - r) h + r conv3x3(h), applied at the full latent resolution."""

    def __init__(self, code_dim: int, ratio: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(code_dim, code_dim, kernel_size=3, padding=1)
        self.ratio = abs(ratio)

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw.mul(1 - self.ratio) + self.conv(h_BChw).mul_(self.ratio)


@dataclass
class QuantizerOutput:
    """Result of the training forward.

    Attributes:
        f_hat: (B, C, H, W) quantized latent with a straight-through gradient to the input features.
        loss: scalar, mean over scales of beta * MSE(f_hat_k.detach(), f) + MSE(f_hat_k, f.detach()).
        hits: (K, V) float code-hit counts of this batch, per scale (all-reduce them for global statistics).
    """

    f_hat: torch.Tensor
    loss: torch.Tensor
    hits: torch.Tensor


class MultiScaleQuantizer(nn.Module):
    """One shared codebook, K scales, Phi residual convs; converts between latents, indices and f_hat."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.sides = tuple(config.scale_sides)
        self.vocab_size = config.vocab_size
        self.code_dim = config.code_dim
        num_scales = len(self.sides)
        self.codebook = nn.Embedding(config.vocab_size, config.code_dim)
        num_convs = num_scales if config.num_phi == 0 else config.num_phi
        # |r| <= 1e-6 makes Phi the identity (no parameters), as in the official code.
        use_conv = abs(config.phi_ratio) > 1e-6
        self.phis = nn.ModuleList(
            Phi(config.code_dim, config.phi_ratio) if use_conv else nn.Identity() for _ in range(num_convs)
        )
        self.phi_index = phi_index_table(num_scales, config.num_phi)
        # Per-scale EMA of code hits, and the number of per-scale updates so far (drives the EMA rate).
        self.register_buffer("code_usage_ema", torch.zeros(num_scales, config.vocab_size))
        self.register_buffer("usage_updates", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------------------------------- helpers
    def phi(self, scale_idx: int) -> nn.Module:
        """The Phi conv (or identity) used at ``scale_idx``."""
        return self.phis[self.phi_index[scale_idx]]

    @torch.no_grad()
    def nearest_codes(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the best code for each row of z_NC (N, C) -> (N,) int64; no gradient.

        L2: ||z||^2 + ||e||^2 summed first, then an in-place addmm with alpha -2 (the official order;
        a different order can flip near-ties). Cosine: argmax of normalised z times normalised codes.
        """
        codes_VC = self.codebook.weight.detach()
        if self.config.lookup == "cosine":
            return torch.argmax(F.normalize(z_NC, dim=-1) @ F.normalize(codes_VC.T, dim=0), dim=1)
        distance_NV = torch.sum(z_NC.square(), dim=1, keepdim=True) + torch.sum(codes_VC.square(), dim=1)
        distance_NV.addmm_(z_NC, codes_VC.T, alpha=-2, beta=1)
        return torch.argmin(distance_NV, dim=1)

    def _check_features(self, f_BChw: torch.Tensor) -> None:
        side = self.sides[-1]
        if f_BChw.dim() != 4 or f_BChw.shape[1] != self.code_dim or f_BChw.shape[2:] != (side, side):
            raise ValueError(
                f"latent features must have shape (B, {self.code_dim}, {side}, {side}), got {tuple(f_BChw.shape)}"
            )

    def check_indices(self, indices: list[torch.Tensor]) -> int:
        """Raise a ValueError/TypeError unless ``indices`` are K integer tensors (B, side_k^2); return B."""
        count = len(self.sides)
        if not isinstance(indices, (list, tuple)) or len(indices) != count:
            got = f"{len(indices)} tensors" if isinstance(indices, (list, tuple)) else type(indices).__name__
            raise ValueError(
                f"expected a list of {count} index tensors (one per scale, sides {self.sides}), got {got}; "
                "split a (B, L) token tensor with ScaleSchedule.split"
            )
        batch = indices[0].shape[0]
        for k, idx in enumerate(indices):
            if idx.dim() != 2 or idx.shape != (batch, self.sides[k] ** 2):
                raise ValueError(
                    f"indices of scale {k} must have shape ({batch}, {self.sides[k] ** 2}) "
                    f"(side {self.sides[k]}, row-major), got {tuple(idx.shape)}"
                )
            if idx.is_floating_point() or idx.is_complex():
                raise TypeError(f"indices of scale {k} must be an integer tensor, got {idx.dtype}")
        return batch

    def _encode_steps(self, f_BChw: torch.Tensor):
        """Yield (indices_N, f_hat) after each scale of the residual encoding (no gradient)."""
        self._check_features(f_BChw)
        B, C, H, W = f_BChw.shape
        f_rest = f_BChw.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        last = len(self.sides) - 1
        for scale_idx, side in enumerate(self.sides):
            z_BChw = f_rest if scale_idx == last else F.interpolate(f_rest, size=(side, side), mode="area")
            idx_N = self.nearest_codes(z_BChw.permute(0, 2, 3, 1).reshape(-1, C))  # rows in (b, row, col) order
            h_BChw = self.codebook(idx_N.view(B, side, side)).permute(0, 3, 1, 2)  # channels-last view
            if scale_idx != last:
                h_BChw = F.interpolate(h_BChw, size=(H, W), mode="bicubic")
            h_BChw = self.phi(scale_idx)(h_BChw.contiguous())  # (B, C, H, W)
            f_hat.add_(h_BChw)
            f_rest.sub_(h_BChw)
            yield idx_N, f_hat

    # -------------------------------------------------------------------------------- encoding paths
    @torch.no_grad()
    def features_to_indices(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Latent (B, C, H, W), H = W = last side -> K int64 tensors (B, side_k^2), row-major."""
        B = f_BChw.shape[0]
        return [idx_N.reshape(B, -1) for idx_N, _ in self._encode_steps(f_BChw)]

    @torch.no_grad()
    def features_to_fhats(self, f_BChw: torch.Tensor) -> list[torch.Tensor]:
        """Latent (B, C, H, W) -> K cumulative reconstructions f_hat_k (B, C, H, W), coarse to fine."""
        return [f_hat.clone() for _, f_hat in self._encode_steps(f_BChw)]

    def lookup(self, indices_Bl: torch.Tensor) -> torch.Tensor:
        """Code vectors of token indices: (B, l) int64 -> (B, l, code_dim)."""
        return self.codebook(indices_Bl)

    def _decode_steps(self, indices: list[torch.Tensor]):
        """Yield the cumulative f_hat (B, C, H, W) after each of the K scales (one tensor, updated in place)."""
        B = self.check_indices(indices)
        C, H = self.code_dim, self.sides[-1]
        f_hat = indices[0].new_zeros(B, C, H, H, dtype=torch.float32)
        for scale_idx, side in enumerate(self.sides):
            h_BChw = self.lookup(indices[scale_idx]).transpose(1, 2).view(B, C, side, side)
            if scale_idx != len(self.sides) - 1:
                h_BChw = F.interpolate(h_BChw, size=(H, H), mode="bicubic")
            f_hat.add_(self.phi(scale_idx)(h_BChw))
            yield f_hat

    def indices_to_fhat(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """K index tensors (B, side_k^2) -> final f_hat (B, C, H, W), float32."""
        *_, f_hat = self._decode_steps(indices)  # the generator's last value: all K scales added
        return f_hat

    def indices_to_fhats(self, indices: list[torch.Tensor]) -> list[torch.Tensor]:
        """K index tensors -> the K cumulative f_hat_k (B, C, H, W), coarse to fine: what the first k scales
        say about the image (the official ``idxBl_to_img(..., last_one=False)``); the last is ``indices_to_fhat``."""
        return [f_hat.clone() for f_hat in self._decode_steps(indices)]

    @torch.no_grad()  # the tokenizer is frozen while the transformer trains; f_hat is updated in place
    def teacher_forcing_input(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Transformer input for scales 1..K-1 given all K ground-truth index maps (official ``idxBl_to_var_input``).

        The input of scale k+1 is the cumulative f_hat after scale k, area-resized to side_{k+1}
        (not the codes of scale k alone). The last scale's indices are never needed as input.

        Args:
            indices: K int64 tensors (B, side_k^2).
        Returns:
            (B, L - 1, code_dim) float32 (L - 1 = total tokens minus the 1x1 start scale).
        """
        B = self.check_indices(indices)
        C, H = self.code_dim, self.sides[-1]
        f_hat = indices[0].new_zeros(B, C, H, H, dtype=torch.float32)
        next_scales = []
        for scale_idx in range(len(self.sides) - 1):
            side, next_side = self.sides[scale_idx], self.sides[scale_idx + 1]
            h_BChw = self.lookup(indices[scale_idx]).transpose(1, 2).view(B, C, side, side)
            f_hat.add_(self.phi(scale_idx)(F.interpolate(h_BChw, size=(H, H), mode="bicubic")))
            next_BChw = F.interpolate(f_hat, size=(next_side, next_side), mode="area")
            next_scales.append(next_BChw.view(B, C, -1).transpose(1, 2))  # (B, next_side^2, C)
        if not next_scales:
            return f_hat.new_zeros(B, 0, C)
        return torch.cat(next_scales, dim=1)

    def next_input(
        self, scale_idx: int, f_hat: torch.Tensor, h_BChw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the codes just sampled at ``scale_idx`` to f_hat and return the next scale's input map.

        Mirrors the official ``get_next_autoregressive_input``: f_hat is updated IN PLACE.

        Args:
            scale_idx: the scale whose tokens were just sampled.
            f_hat: (B, C, H, W) running reconstruction (start from zeros, float32).
            h_BChw: (B, C, side, side) code vectors of those tokens, built as
                ``lookup(idx_Bl).transpose(1, 2).reshape(B, C, side, side)``.
        Returns:
            (f_hat, next_BChw): next_BChw is f_hat area-resized to the next side (B, C, side', side');
            at the last scale both are the final f_hat.
        """
        H = self.sides[-1]
        if scale_idx != len(self.sides) - 1:
            f_hat.add_(self.phi(scale_idx)(F.interpolate(h_BChw, size=(H, H), mode="bicubic")))
            next_side = self.sides[scale_idx + 1]
            return f_hat, F.interpolate(f_hat, size=(next_side, next_side), mode="area")
        f_hat.add_(self.phi(scale_idx)(h_BChw))
        return f_hat, f_hat

    # ------------------------------------------------------------------------------- training forward
    def forward(self, f_BChw: torch.Tensor, update_usage: bool = True) -> QuantizerOutput:
        """Training forward: quantize with gradients to the codebook and Phi, straight-through to f.

        Runs in float32 with autocast off. In training mode it also updates ``code_usage_ema`` with this
        batch's hits unless ``update_usage`` is False; a data-parallel trainer passes False, all-reduces
        ``output.hits`` and calls :meth:`update_usage` itself, so every rank holds the global statistics.

        Args:
            f_BChw: (B, C, H, W) encoder features.
            update_usage: update the usage EMA from this batch (training mode only).
        Returns:
            QuantizerOutput(f_hat (B, C, H, W), loss (), hits (K, V)).
        """
        self._check_features(f_BChw)
        with torch.autocast(device_type=f_BChw.device.type, enabled=False):
            f_BChw = f_BChw.float()
            B, C, H, W = f_BChw.shape
            f_no_grad = f_BChw.detach()
            f_rest = f_no_grad.clone()
            f_hat = torch.zeros_like(f_rest)
            last = len(self.sides) - 1
            loss = f_BChw.new_zeros(())
            hits = []
            for scale_idx, side in enumerate(self.sides):
                z_BChw = f_rest if scale_idx == last else F.interpolate(f_rest, size=(side, side), mode="area")
                idx_N = self.nearest_codes(z_BChw.permute(0, 2, 3, 1).reshape(-1, C))
                hits.append(idx_N.bincount(minlength=self.vocab_size).float())
                h_BChw = self.codebook(idx_N.view(B, side, side)).permute(0, 3, 1, 2)
                if scale_idx != last:
                    h_BChw = F.interpolate(h_BChw, size=(H, W), mode="bicubic")
                h_BChw = self.phi(scale_idx)(h_BChw.contiguous())
                f_hat = f_hat + h_BChw
                f_rest.sub_(h_BChw.detach())  # the residual only steers the (gradient-free) code search
                # Commitment pulls the encoder towards f_hat; the second term fits codes and Phi to f.
                loss = loss + F.mse_loss(f_hat.detach(), f_BChw).mul_(self.config.beta) + F.mse_loss(f_hat, f_no_grad)
            loss = loss * (1.0 / len(self.sides))
            f_hat_st = (f_hat.detach() - f_no_grad).add_(f_BChw)  # value f_hat, gradient identity to f
        hits_KV = torch.stack(hits)
        if self.training and update_usage:
            self.update_usage(hits_KV)
        return QuantizerOutput(f_hat=f_hat_st, loss=loss, hits=hits_KV)

    # ------------------------------------------------------------------------------ codebook usage
    @torch.no_grad()
    def update_usage(self, hits_KV: torch.Tensor) -> None:
        """Fold one batch's (K, V) hit counts into ``code_usage_ema`` with the official rule.

        The counter advances once per scale: the very first update copies (only scale 0 of the first
        batch), updates 1..99 use 0.9 old + 0.1 new, later ones 0.99 old + 0.01 new.
        """
        if hits_KV.shape != self.code_usage_ema.shape:
            raise ValueError(
                f"hits must have shape {tuple(self.code_usage_ema.shape)} (scales, vocab), got {tuple(hits_KV.shape)}"
            )
        hits_KV = hits_KV.to(self.code_usage_ema)
        start = int(self.usage_updates.item())
        for scale_idx in range(hits_KV.shape[0]):
            count, ema_V, hit_V = start + scale_idx, self.code_usage_ema[scale_idx], hits_KV[scale_idx]
            if count == 0:
                ema_V.copy_(hit_V)
            elif count < 100:
                ema_V.mul_(0.9).add_(hit_V.mul(0.1))
            else:
                ema_V.mul_(0.99).add_(hit_V.mul(0.01))
        self.usage_updates.add_(hits_KV.shape[0])

    def usage_percent(self, threshold_hits: float) -> list[float]:
        """Per scale, the percentage of codes whose EMA hits reach ``threshold_hits``.

        The official threshold is world_size * (B * H * W) / V * 0.08 (B, H, W of one rank's latents).
        """
        return [(ema_V >= threshold_hits).float().mean().item() * 100 for ema_V in self.code_usage_ema]

    @torch.no_grad()
    def restart_dead_codes(
        self, features: torch.Tensor, min_hits: float, generator: torch.Generator | None = None
    ) -> int:
        """Re-initialise codes whose EMA hits summed over scales are below ``min_hits``.

        Each dead code becomes a random feature vector (so it lies where the encoder puts its outputs).
        Its EMA is set to ``min_hits / K`` per scale so it has time to be used before it counts as dead
        again. Optimizer moments of those rows are left to the trainer.

        Args:
            features: (B, C, H, W) encoder features or (N, C) rows.
            min_hits: threshold on the summed EMA hits.
            generator: optional CPU generator for the choice of feature rows.
        Returns:
            the number of codes restarted.
        """
        if features.dim() == 4:
            rows_NC = features.detach().permute(0, 2, 3, 1).reshape(-1, features.shape[1])
        elif features.dim() == 2:
            rows_NC = features.detach()
        else:
            raise ValueError(f"features must be (B, C, H, W) or (N, C), got shape {tuple(features.shape)}")
        if rows_NC.shape[1] != self.code_dim or rows_NC.shape[0] == 0:
            raise ValueError(
                f"features need {self.code_dim} channels and at least one row, got {tuple(features.shape)}"
            )
        dead_V = self.code_usage_ema.sum(0) < min_hits
        num_dead = int(dead_V.sum().item())
        if num_dead == 0:
            return 0
        pick = torch.randint(rows_NC.shape[0], (num_dead,), generator=generator).to(rows_NC.device)
        self.codebook.weight[dead_V] = rows_NC[pick].to(self.codebook.weight.dtype)
        self.code_usage_ema[:, dead_V] = min_hits / self.code_usage_ema.shape[0]
        return num_dead
