"""Held-out test loss and token error per scale, and the VAR paper's summaries of them (§5.2).

The transformer trainer's ``eval_step`` and ``nextscale evaluate --loss`` both compute their numbers here, for class
models (labelled tokens) and text models (captioned tokens, conditioned on the frozen text encoder's features of
each caption, encoded once through ``nextscale.text.cache`` as the trainer does):

    loss        per-sample mean cross-entropy over all L tokens                     (B,)
    scale_loss  per-sample mean cross-entropy over the tokens of each scale         (B, K)
    token_error per-sample share of wrongly predicted (argmax) tokens of each scale  (B, K)

and ``summarize`` turns the per-scale means into the paper's four numbers: L_last and Err_last (the last
scale), L_avg and Err_avg (all tokens). The averages weight each scale by its number of tokens, so they
equal the mean over all tokens. Worked example: scales (1, 2) have 1 + 4 = 5 tokens; per-scale losses
(2.0, 1.0) give L_avg = (1 x 2.0 + 4 x 1.0) / 5 = 1.2, L_last = 1.0.

References: Tian et al. 2024, "Visual Autoregressive Modeling" (arXiv:2404.02905), §5.2 and Fig. 5.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nextscale.scales import ScaleSchedule
from nextscale.text.cache import CachedTextEncoder
from nextscale.text.encoders import TextEncoder
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import ClassCondition, TextCondition
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_model import TextScaleTransformer


def per_scale_mean(values: torch.Tensor, schedule: ScaleSchedule) -> torch.Tensor:
    """(B, L) per-token values -> (B, K) means over the tokens of each scale."""
    return torch.stack([values[:, schedule.scale_slice(k)].mean(1) for k in range(schedule.num_scales)], dim=1)


def held_out_metrics(logits: torch.Tensor, tokens: torch.Tensor, schedule: ScaleSchedule) -> dict[str, torch.Tensor]:
    """Per-sample test metrics of teacher-forced logits.

    Args:
        logits: (B, L, V) logits of all L tokens.
        tokens: (B, L) int64 targets.
        schedule: the scale schedule of the tokens.

    Returns:
        {"loss": (B,), "scale_loss": (B, K), "token_error": (B, K)}, float32.
    """
    batch, length, vocab = logits.shape
    ce = F.cross_entropy(logits.float().reshape(-1, vocab), tokens.reshape(-1), reduction="none").view(batch, length)
    wrong = (logits.argmax(-1) != tokens).float()  # (B, L)
    return {
        "loss": ce.mean(1),  # (B,)
        "scale_loss": per_scale_mean(ce, schedule),  # (B, K)
        "token_error": per_scale_mean(wrong, schedule),  # (B, K)
    }


def summarize(scale_loss: list[float], token_error: list[float], schedule: ScaleSchedule) -> dict[str, float]:
    """The paper's L_last, L_avg, Err_last, Err_avg from per-scale means (K,) (averages weighted by tokens)."""
    if len(scale_loss) != schedule.num_scales or len(token_error) != schedule.num_scales:
        raise ValueError(
            f"need one loss and one error per scale ({schedule.num_scales}), "
            f"got {len(scale_loss)} and {len(token_error)}"
        )
    weights = [count / schedule.total_tokens for count in schedule.token_counts]
    return {
        "L_last": float(scale_loss[-1]),
        "L_avg": float(sum(w * value for w, value in zip(weights, scale_loss))),
        "Err_last": float(token_error[-1]),
        "Err_avg": float(sum(w * value for w, value in zip(weights, token_error))),
    }


@dataclass(frozen=True)
class HeldOutReport:
    """Mean test loss and token error per scale over a held-out set, with the paper's summaries.

    ``model_kind`` is "next-scale" or "raster next-token": a raster model's one "scale" is a map that quantises the
    whole latent, other codes than a next-scale model's last scale (the residual its coarser scales left), so the
    two kinds' L_last and L_avg are not comparable."""

    num_samples: int
    model_kind: str
    scale_sides: tuple[int, ...]
    scale_loss: list[float]
    token_error: list[float]
    L_last: float
    L_avg: float
    Err_last: float
    Err_avg: float


def collate_held_out(items: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor | list[str]]:
    """DataLoader ``collate_fn`` for token-shard items: (tokens (B, L), labels (B,) int64 or B captions).

    A row may carry one caption or a list of them (a token folder that keeps every caption of an image); the
    first is taken, so a held-out number never depends on a random choice.
    """
    tokens = torch.stack([row[0] for row in items])  # (B, L)
    conditions = [row[1] for row in items]
    if all(isinstance(condition, str) for condition in conditions):
        return tokens, conditions
    if all(isinstance(condition, (list, tuple)) and condition for condition in conditions):
        return tokens, [str(condition[0]) for condition in conditions]
    return tokens, torch.as_tensor(conditions, dtype=torch.int64)


def text_condition(encoder: CachedTextEncoder, captions: Sequence[str], device: torch.device) -> TextCondition:
    """Captions -> their encoder features on ``device``, as the trainer's ``text_condition`` builds them (no
    negative rows: a model in eval mode drops no condition)."""
    encoding = encoder.encode(list(captions)).to(device)
    return TextCondition(encoding.hidden, encoding.mask, encoding.pooled)


@torch.inference_mode()
def evaluate_held_out(
    transformer: torch.nn.Module,
    tokenizer: MultiScaleVQVAE,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor | Sequence[str]]],
    progress: bool = True,
    text_encoder: TextEncoder | CachedTextEncoder | None = None,
    transformer_context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> HeldOutReport:
    """Teacher-forced test loss and token error of a next-scale transformer (or the raster baseline) on held-out
    tokens.

    Args:
        transformer: a ``ScaleTransformer``, ``TextScaleTransformer`` or ``RasterTransformer`` (put in eval mode
            here: no condition dropout, no drop-path). The raster baseline reads the token map itself, token by
            token, so its one "scale" is the whole map and its loss is next-token, not next-scale.
        tokenizer: the tokenizer that made the tokens (builds the teacher-forcing inputs).
        batches: (tokens (B, L) int, labels (B,)) pairs for a class model, (tokens, B captions) for a text model,
            e.g. a DataLoader over a ``TokenShardDataset`` with ``collate_fn=collate_held_out``.
        progress: tqdm bar (counts samples).
        text_encoder: the frozen encoder a text model was trained with (required for captions; each distinct
            caption is encoded once).
        transformer_context: makes the context each transformer call runs in, e.g. a pipeline's
            ``precision.autocast`` (a bf16 pipeline's linear weights are bf16 and need it); the tokenizer and the
            text encoder stay outside it, as when the pipeline samples.

    Returns:
        a ``HeldOutReport`` (means over every sample and token).
    """
    is_text = isinstance(transformer, TextScaleTransformer)
    if is_text and text_encoder is None:
        raise ValueError("a text model's held-out loss needs its text encoder to encode the captions")
    captions = text_encoder
    if text_encoder is not None and not isinstance(text_encoder, CachedTextEncoder):
        captions = CachedTextEncoder(text_encoder)
    transformer.eval()
    device = next(transformer.parameters()).device
    schedule = transformer.config.schedule
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with tqdm(unit="seq", desc="test loss", disable=not progress) as bar:
        for tokens, conditions in batches:
            tokens = tokens.to(device).long()
            if isinstance(transformer, RasterTransformer):
                teacher = tokens  # the model embeds the tokens themselves (as the trainer feeds it)
            else:
                teacher = tokenizer.teacher_forcing_input(tokenizer.indices_from_tokens(tokens))  # (B, L - 1, code_dim)
            if isinstance(conditions, (list, tuple)) != is_text:
                data, model = ("labelled", "text") if is_text else ("captioned", "class")
                raise ValueError(f"these tokens are {data}, the model is {model}-conditional; tokenize matching data")
            if is_text:
                condition = text_condition(captions, conditions, device)
            else:
                condition = ClassCondition(conditions.to(device).long(), transformer.config.null_class_id)
            with transformer_context():
                logits = transformer(condition, teacher)  # (B, L, V)
            metrics = held_out_metrics(logits, tokens, schedule)
            for name, value in metrics.items():
                sums[name] = sums.get(name, 0) + value.sum(0).double().cpu()
            count += tokens.shape[0]
            bar.update(tokens.shape[0])
    if count == 0:
        raise ValueError("no held-out samples to evaluate")
    scale_loss = (sums["scale_loss"] / count).tolist()
    token_error = (sums["token_error"] / count).tolist()
    summary = summarize(scale_loss, token_error, schedule)
    kind = "raster next-token" if isinstance(transformer, RasterTransformer) else "next-scale"
    return HeldOutReport(count, kind, tuple(schedule.sides), scale_loss, token_error, **summary)
