"""Import (and export) the official VAR VQVAE weights, e.g. ``vae_ch160v4096z32.pth``.

The official state dict names follow ``models/basic_vae.py`` / ``models/quant.py`` of
FoundationVision/VAR (``encoder.down.{i}.block.{j}``, ``quantize.quant_resi.qresi_ls.{n}``, ...). Every
name is translated EXPLICITLY by the table below, in both directions; nothing is loaded by position.
Sizes (widths, levels, blocks, codebook, Phi sharing, conv kernel) are inferred from the tensors; the
scale schedule, the Phi ratio and the lookup are not stored in the file and are arguments. Besides the plain
state dict, official trainer states (the VQVAE at ``["trainer"]["vae_local"]``), wrapped or prefixed state
dicts and ``.safetensors`` files are read (see ``nextscale.official_files``).

References:
    FoundationVision/VAR ``models/vqvae.py`` (``VQVAE``, ``load_state_dict`` override for ``ema_vocab_hit_SV``).
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Mapping

import torch

from nextscale.official_files import OfficialState, read_official
from nextscale.pretrained import load_weights_only
from nextscale.scales import SIDES_256
from nextscale.tokenizer.config import TokenizerConfig
from nextscale.tokenizer.vqvae import MultiScaleVQVAE

# Placeholders of the name templates and the text each may stand for.
_FIELDS = {
    "side": "encoder|decoder",
    "i": r"\d+",
    "j": r"\d+",
    "p": "weight|bias",
    "rn": "norm1|conv1|norm2|conv2",  # ResNet-block leaves that keep their name
    "an": "norm|qkv",  # attention leaves that keep their name
}

# (official name, our name). Phi convs are listed separately because their official name depends on
# the sharing mode.
_NAME_PAIRS = [
    ("{side}.conv_in.{p}", "{side}.conv_in.{p}"),
    ("{side}.norm_out.{p}", "{side}.norm_out.{p}"),
    ("{side}.conv_out.{p}", "{side}.conv_out.{p}"),
    ("encoder.down.{i}.block.{j}.{rn}.{p}", "encoder.levels.{i}.blocks.{j}.{rn}.{p}"),
    ("encoder.down.{i}.block.{j}.nin_shortcut.{p}", "encoder.levels.{i}.blocks.{j}.shortcut.{p}"),
    ("encoder.down.{i}.attn.{j}.{an}.{p}", "encoder.levels.{i}.attentions.{j}.{an}.{p}"),
    ("encoder.down.{i}.attn.{j}.proj_out.{p}", "encoder.levels.{i}.attentions.{j}.proj.{p}"),
    ("encoder.down.{i}.downsample.conv.{p}", "encoder.levels.{i}.downsample.conv.{p}"),
    ("decoder.up.{i}.block.{j}.{rn}.{p}", "decoder.levels.{i}.blocks.{j}.{rn}.{p}"),
    ("decoder.up.{i}.block.{j}.nin_shortcut.{p}", "decoder.levels.{i}.blocks.{j}.shortcut.{p}"),
    ("decoder.up.{i}.attn.{j}.{an}.{p}", "decoder.levels.{i}.attentions.{j}.{an}.{p}"),
    ("decoder.up.{i}.attn.{j}.proj_out.{p}", "decoder.levels.{i}.attentions.{j}.proj.{p}"),
    ("decoder.up.{i}.upsample.conv.{p}", "decoder.levels.{i}.upsample.conv.{p}"),
    ("{side}.mid.block_1.{rn}.{p}", "{side}.middle.block1.{rn}.{p}"),
    ("{side}.mid.block_2.{rn}.{p}", "{side}.middle.block2.{rn}.{p}"),
    ("{side}.mid.attn_1.{an}.{p}", "{side}.middle.attention.{an}.{p}"),
    ("{side}.mid.attn_1.proj_out.{p}", "{side}.middle.attention.proj.{p}"),
    ("quant_conv.{p}", "quant_conv.{p}"),
    ("post_quant_conv.{p}", "post_quant_conv.{p}"),
    ("quantize.embedding.weight", "quantizer.codebook.weight"),
    ("quantize.ema_vocab_hit_SV", "quantizer.code_usage_ema"),
]
# Official Phi names: n >= 2 partially shared, n == 1 one shared, n == 0 one per scale.
_PHI_PAIRS = {
    "partial": ("quantize.quant_resi.qresi_ls.{i}.{p}", "quantizer.phis.{i}.conv.{p}"),
    "shared": ("quantize.quant_resi.qresi.{p}", "quantizer.phis.0.conv.{p}"),
    "per_scale": ("quantize.quant_resi.{i}.{p}", "quantizer.phis.{i}.conv.{p}"),
}
# Our buffer with no official counterpart (the official EMA counter is a Python int, never saved).
_OURS_ONLY = ("quantizer.usage_updates",)


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, alternatives in _FIELDS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{alternatives})")
    return re.compile(pattern + r"\Z")


def _translate(key: str, pairs: list[tuple[str, str]], reverse: bool) -> str | None:
    for official, ours in pairs:
        source, target = (ours, official) if reverse else (official, ours)
        match = _compile(source).match(key)
        if match:
            return target.format(**match.groupdict())
    return None


def official_to_ours(key: str) -> str | None:
    """Our state-dict name for an official VQVAE name, or None if the name is not part of the layout."""
    return _translate(key, [*_NAME_PAIRS, *_PHI_PAIRS.values()], reverse=False)


def ours_to_official(key: str, num_phi: int) -> str | None:
    """The official name for one of our state-dict names (``num_phi`` picks the Phi naming); None if ours only."""
    mode = "per_scale" if num_phi == 0 else "shared" if num_phi == 1 else "partial"
    return _translate(key, [*_NAME_PAIRS, _PHI_PAIRS[mode]], reverse=True)


def read_official_vqvae(source: str | os.PathLike | Mapping | OfficialState) -> OfficialState:
    """The VQVAE state dict of an official file (plain, trainer state, wrapped or prefixed; .pth or .safetensors),
    loaded safely. A transformer file is refused with the flag it belongs to."""
    return read_official(source, "VQVAE", load_weights_only)


def _indices(state: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in state if (m := regex.match(key))})


def infer_config(
    state: Mapping[str, torch.Tensor],
    scale_sides: tuple[int, ...] = SIDES_256,
    phi_ratio: float = 0.5,
    lookup: str = "l2",
    label: str = "the state dict",
) -> TokenizerConfig:
    """Read the tokenizer sizes from an official VQVAE state dict.

    Args:
        state: official names -> tensors.
        scale_sides: the token-map sides (not stored in the file).
        phi_ratio: Phi mix ratio r (not stored; the release uses 0.5).
        lookup: "l2" (release) or "cosine".
        label: how to name the source in error messages.
    Returns:
        The TokenizerConfig that the file fits.
    """

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise ValueError(
                f"{label} has no {key!r}; it is not an official VAR VQVAE state dict "
                "(expected keys like encoder.down.0.block.0.conv1.weight, quantize.embedding.weight)"
            )
        return state[key]

    base_channels, in_channels = need("encoder.conv_in.weight").shape[:2]
    vocab_size, code_dim = need("quantize.embedding.weight").shape
    levels = _indices(state, r"encoder\.down\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise ValueError(f"{label}: encoder levels {levels} are not 0..n-1; the state dict is incomplete")
    multipliers = []
    for i in levels:
        width = need(f"encoder.down.{i}.block.0.conv1.weight").shape[0]
        if width % base_channels:
            raise ValueError(f"{label}: level {i} width {width} is not a multiple of base width {base_channels}")
        multipliers.append(width // base_channels)
    num_res_blocks = len(_indices(state, r"encoder\.down\.0\.block\.(\d+)\."))
    partial = _indices(state, r"quantize\.quant_resi\.qresi_ls\.(\d+)\.")
    per_scale = _indices(state, r"quantize\.quant_resi\.(\d+)\.")
    if partial:
        num_phi = len(partial)
    elif any(key.startswith("quantize.quant_resi.qresi.") for key in state):
        num_phi = 1
    elif per_scale:
        if len(per_scale) != len(scale_sides):
            raise ValueError(
                f"{label} has {len(per_scale)} per-scale Phi convs but scale_sides {tuple(scale_sides)} "
                f"has {len(scale_sides)} scales; pass the schedule the tokenizer was trained with"
            )
        num_phi = 0
    else:
        num_phi, phi_ratio = 1, 0.0  # no Phi weights: the checkpoint was built with identity Phis
    return TokenizerConfig(
        vocab_size=int(vocab_size),
        code_dim=int(code_dim),
        base_channels=int(base_channels),
        channel_multipliers=tuple(multipliers),
        num_res_blocks=num_res_blocks,
        in_channels=int(in_channels),
        attention_in_last_level=f"encoder.down.{levels[-1]}.attn.0.qkv.weight" in state,
        attention_in_middle="encoder.mid.attn_1.qkv.weight" in state,
        lookup=lookup,
        quant_conv_kernel=int(need("quant_conv.weight").shape[-1]),
        phi_ratio=phi_ratio,
        num_phi=num_phi,
        scale_sides=tuple(scale_sides),
    )


def load_official_vqvae(
    source: str | os.PathLike | Mapping | OfficialState,
    scale_sides: tuple[int, ...] = SIDES_256,
    *,
    phi_ratio: float = 0.5,
    lookup: str = "l2",
) -> MultiScaleVQVAE:
    """Build a MultiScaleVQVAE from an official VAR VQVAE checkpoint (strict: every key, every shape).

    The file is read with ``torch.load(..., weights_only=True)``. As in the official loader, a
    ``quantize.ema_vocab_hit_SV`` with a different number of scales than ``scale_sides`` is ignored
    (the model keeps its own zero statistics).

    Args:
        source: a ``vae_ch160v4096z32.pth``-style file (or a trainer state holding one), its loaded state dict,
            or what :func:`read_official_vqvae` returned.
        scale_sides: token-map sides; SIDES_256 for 256 px, SIDES_512 for 512 px.
        phi_ratio: Phi mix ratio (0.5 in the release).
        lookup: "l2" (release) or "cosine".
    Returns:
        The model in eval mode, on the CPU.
    """
    checkpoint = read_official_vqvae(source)
    state, label = checkpoint.state, checkpoint.source
    config = infer_config(state, scale_sides, phi_ratio, lookup, label)
    model = MultiScaleVQVAE(config)
    own = model.state_dict()
    mapped, unexpected = {}, []
    for key, tensor in state.items():
        ours = official_to_ours(key)
        if ours is None or ours not in own:
            unexpected.append(key)
        else:
            mapped[ours] = tensor
    missing = [ours_to_official(k, config.num_phi) for k in own if k not in mapped and k not in _OURS_ONLY]
    if missing or unexpected:
        # Only the problems there are, and the inferred layout in a few words (the whole config is a screenful).
        problems = [
            f"{name} {len(keys)} key(s) {keys[:5]}"
            for name, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        ]
        layout = (
            f"vocab {config.vocab_size}, code width {config.code_dim}, base channels {config.base_channels} x "
            f"{list(config.channel_multipliers)}, {config.num_res_blocks} res blocks, {config.num_phi} Phi"
        )
        raise ValueError(
            f"{label} does not fit the VQVAE layout inferred from it ({layout}): {'; '.join(problems)}; "
            "give the official VQVAE file (vae_ch160v4096z32.pth) as saved"
        )
    usage = mapped["quantizer.code_usage_ema"]
    if usage.dim() == 2 and usage.shape[0] != own["quantizer.code_usage_ema"].shape[0]:
        mapped["quantizer.code_usage_ema"] = own["quantizer.code_usage_ema"]
    for ours, tensor in mapped.items():
        if tensor.shape != own[ours].shape:
            raise ValueError(
                f"{label}: {ours_to_official(ours, config.num_phi)} has shape {tuple(tensor.shape)}, "
                f"but the inferred layout needs {tuple(own[ours].shape)}; the checkpoint is inconsistent"
            )
        mapped[ours] = tensor.to(own[ours].dtype)
    for ours in _OURS_ONLY:
        mapped[ours] = own[ours]
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def to_official_state_dict(model: MultiScaleVQVAE) -> OrderedDict[str, torch.Tensor]:
    """Our weights under the official names (what ``torch.save(official_vqvae.state_dict())`` would hold)."""
    state = OrderedDict()
    for key, tensor in model.state_dict().items():
        if key in _OURS_ONLY:
            continue
        official = ours_to_official(key, model.config.num_phi)
        if official is None:
            raise ValueError(f"{key} has no official counterpart; the model is not an official-layout tokenizer")
        state[official] = tensor.detach().clone()
    return state
