"""Where an official VAR / STAR checkpoint keeps its state dict, and which model a state dict is.

The same weights reach users packed in several ways; ``unwrap_official`` finds the state dict in each:

- a plain ``state_dict()`` (the released ``var_d*.pth`` and ``vae_ch160v4096z32.pth``);
- an official trainer state ``{"epoch", "iter", "trainer": {"config", "var_wo_ddp", "vae_local", "var_opt"}}``
  (the STAR releases, VAR's ``ar-ckpt-*.pth``): the transformer at ``["trainer"]["var_wo_ddp"]``, the VQVAE at
  ``["trainer"]["vae_local"]``, and the scale schedule (``patch_nums``) and image sides (``resos``) in
  ``["trainer"]["config"]``;
- one level of a common wrapper: ``{"model": sd}``, ``{"state_dict": sd}`` (PyTorch Lightning) or ``{"ema": sd}``;
- keys that all start with ``module.`` (saved from a DDP wrapper), ``_orig_mod.`` (from ``torch.compile``) or
  ``model.`` (a Lightning module's attribute), when what remains is an official layout;
- an ema-pytorch ``EMA`` module's state: the averaged weights under ``ema_model.``, beside its ``initted`` and
  ``step`` counters and, unless it was built with ``include_online_model=False``, the live copy under
  ``online_model.``; the averaged weights are the ones read.

Our own checkpoints never need the prefixes (STYLE.md rule 10 saves the bare module); they are undone here
because the files come from other people's training code. Nothing here opens a file: ``read_official`` is
handed the safe loader (``pretrained.load_weights_only``, which runs no code from the file) by its callers.

References: VAR_REFERENCE.md section 5 (trainer checkpoints), STAR_REFERENCE.md sections 6 and 10.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

# The official trainer state's entry for each component.
TRAINER_ENTRIES = {"transformer": "var_wo_ddp", "vqvae": "vae_local"}
# The trainer-state entry each kind of file is read from.
COMPONENTS = {"VAR": "transformer", "STAR": "transformer", "VQVAE": "vqvae"}
WRAPPERS = ("model", "state_dict", "ema")
# Key prefixes of wrappers: DDP, torch.compile, a Lightning module's attribute, ema-pytorch's averaged weights.
PREFIXES = ("module.", "_orig_mod.", "model.", "ema_model.")
# The rest of an ema-pytorch EMA module's state: the live copy (unless include_online_model=False) and two counters.
EMA_PYTORCH_WEIGHTS, EMA_PYTORCH_ONLINE, EMA_PYTORCH_COUNTERS = "ema_model.", "online_model.", ("initted", "step")
# How a message names each kind of file, and the convert flag that reads it.
DESCRIPTIONS = {
    "VAR": "a VAR transformer checkpoint",
    "STAR": "a STAR transformer checkpoint",
    "VQVAE": "the VQVAE (tokenizer) checkpoint",
}
# What a file given for each kind must be (for "X is not an official ..."), and a released file of that kind.
EXPECTED = {"VAR": "VAR transformer checkpoint", "STAR": "STAR transformer checkpoint", "VQVAE": "VAR VQVAE checkpoint"}
EXAMPLES = {"VAR": "var_d16.pth", "STAR": "star-256-d16.pth", "VQVAE": "vae_ch160v4096z32.pth"}
FLAGS = {"VAR": "--var", "STAR": "--star", "VQVAE": "--vae"}


@dataclass(frozen=True)
class OfficialState:
    """A state dict found in an official file, and how it was found.

    Attributes:
        state: names -> tensors, with wrappers and key prefixes removed.
        source: the file (or "the given state dict"), for messages.
        location: where in the file the state dict sat, e.g. ``['trainer']['var_wo_ddp']``; "" at the top.
        prefix: the key prefix removed from every key, e.g. ``module.``; "" when none.
        patch_nums: the scale sides a trainer state records (``trainer.config.patch_nums``), else None.
        resos: the image sides per scale a trainer state records (``trainer.config.resos``), else None.
        skipped: the entries left out, e.g. ema-pytorch's ``online_model.*`` copy and ``step`` counter.
    """

    state: dict
    source: str
    location: str = ""
    prefix: str = ""
    patch_nums: tuple[int, ...] | None = None
    resos: tuple[int, ...] | None = None
    skipped: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        """What was undone to reach the state dict, for the converter's summary line."""
        notes = [f"read {self.location}"] if self.location else []
        notes += [f"stripped key prefix {self.prefix!r}"] if self.prefix else []
        return notes + ([f"skipped {', '.join(self.skipped)}"] if self.skipped else [])


def read_official(
    source: str | os.PathLike | Mapping | OfficialState, kind: str, load: Callable[[str | os.PathLike], object]
) -> OfficialState:
    """The ``kind`` ("VAR", "STAR" or "VQVAE") state dict of an official file, or of an object already loaded.

    Args:
        source: a checkpoint path, a loaded checkpoint, or an ``OfficialState`` (returned as it is).
        kind: which model the file must hold; a file of another known kind is refused with the flag it belongs to.
        load: reads a path without running code from it (``pretrained.load_weights_only``, passed in because
            this module sits beside ``pretrained``, not above it).
    Returns:
        The state dict (names -> tensors), unwrapped, and what the file records beside it.
    """
    if isinstance(source, OfficialState):
        return source
    if isinstance(source, Mapping):
        loaded, name = source, "the given state dict"
    else:
        if not os.path.exists(source):
            raise FileNotFoundError(f"{source} not found; pass the official {EXPECTED[kind]} (e.g. {EXAMPLES[kind]})")
        loaded, name = load(source), str(source)
    checkpoint = unwrap_official(loaded, name, COMPONENTS[kind])
    check_kind(checkpoint, kind)
    _check_tensors(checkpoint)
    return checkpoint


def guess_kind(state: Mapping) -> str | None:
    """ "VAR", "STAR" or "VQVAE" by the keys only that layout has; None for anything else."""
    keys = [key for key in state if isinstance(key, str)]
    if any(key.startswith(("quantize.", "encoder.down.", "decoder.up.")) for key in keys):
        return "VQVAE"
    if "encoder_proj.weight" in state or "head_logits.weight" in state:
        return "STAR"
    if "head.weight" in state and "class_emb.weight" in state:
        return "VAR"
    return None


def check_kind(checkpoint: OfficialState, expected: str) -> None:
    """Refuse a state dict of another known kind, naming the flag it belongs to (swapped files)."""
    kind = guess_kind(checkpoint.state)
    if kind is not None and kind != expected:
        raise ValueError(
            f"{checkpoint.source} is not an official {EXPECTED[expected]}: it looks like {DESCRIPTIONS[kind]} "
            f"(use {FLAGS[kind]} for it)"
        )


def _check_tensors(checkpoint: OfficialState) -> None:
    """Refuse entries that are not name -> tensor (a training script's step count or arguments saved among the
    weights), naming them and, when one of them holds the weights, the entry to save on its own."""
    bad = {key: value for key, value in checkpoint.state.items() if not isinstance(value, torch.Tensor)}
    bad.update({key: value for key, value in checkpoint.state.items() if not isinstance(key, str)})
    if not bad:
        return
    shown = ", ".join(f"{key!r} ({type(value).__name__})" for key, value in list(bad.items())[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    where = f"{checkpoint.source}{checkpoint.location}"
    nested = [key for key, value in bad.items() if isinstance(value, Mapping) and guess_kind(value) is not None]
    if nested:  # e.g. {"net": state_dict, "epoch": 3}: the weights sit one level down, under an unusual name
        entry = repr(nested[0])
        fix = f"the weights look to be under [{entry}]: save them on their own, torch.save(checkpoint[{entry}], path)"
    else:
        fix = "keep the tensors only: torch.save({k: v for k, v in state.items() if torch.is_tensor(v)}, path)"
    raise ValueError(f"{where} is not a plain state dict (names -> tensors): it also holds {shown}{more}; {fix}")


def unwrap_official(obj: object, source: str, component: str) -> OfficialState:
    """Find the ``component`` ("transformer" or "vqvae") state dict in a loaded official file.

    Args:
        obj: what ``load_weights_only`` returned (or a state dict given directly).
        source: the file name, for messages.
        component: which state dict a trainer state should give.
    Returns:
        The state dict with wrappers and common key prefixes removed, and what was recorded beside it.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source} holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    state, location, config = obj, "", None
    trainer = obj.get("trainer")
    if isinstance(trainer, Mapping):
        entry = TRAINER_ENTRIES[component]
        if entry not in trainer:
            raise ValueError(_missing_trainer_entry(trainer, source, entry))
        state, location, config = trainer[entry], f"['trainer'][{entry!r}]", trainer.get("config")
    else:
        wrappers = [name for name in WRAPPERS if isinstance(obj.get(name), Mapping)]
        if len(wrappers) > 1:
            raise ValueError(
                f"{source} holds several state dicts {wrappers}; save the one to convert on its own, e.g. "
                f"torch.save(checkpoint[{wrappers[-1]!r}], path)"
            )
        if wrappers:
            state, location = obj[wrappers[0]], f"[{wrappers[0]!r}]"
    if not isinstance(state, Mapping):
        raise ValueError(f"{source}{location} holds a {type(state).__name__}, not a state dict (name -> tensor)")
    state, prefix, skipped = _strip_prefixes(dict(state))
    return OfficialState(
        state,
        source,
        location,
        prefix,
        patch_nums=_recorded_sides(config, "patch_nums", source),
        resos=_recorded_sides(config, "resos", source),
        skipped=skipped,
    )


def _strip_prefixes(state: dict) -> tuple[dict, str, tuple[str, ...]]:
    """Remove the wrapper prefixes that every key carries (nested ones too, e.g. ``module._orig_mod.``), and
    take ema-pytorch's averaged weights, when what remains is a known layout; otherwise the keys stay as they
    are, for the layout checks to name. Returns the state, the prefixes removed and the entries skipped."""
    stripped, removed, skipped = state, "", ()
    if any(isinstance(key, str) and key.startswith(EMA_PYTORCH_WEIGHTS) for key in state):
        online = [key for key in state if isinstance(key, str) and key.startswith(EMA_PYTORCH_ONLINE)]
        counters = [key for key in EMA_PYTORCH_COUNTERS if key in state]
        skipped = (*([EMA_PYTORCH_ONLINE + "*"] if online else []), *counters)
        stripped = {key: value for key, value in state.items() if key not in {*online, *counters}}
    while stripped:
        prefix = next((p for p in PREFIXES if all(isinstance(k, str) and k.startswith(p) for k in stripped)), None)
        if prefix is None:
            break
        stripped = {key[len(prefix) :]: value for key, value in stripped.items()}
        removed += prefix
    unwrapped = guess_kind(stripped) is not None and (not skipped or removed.startswith(EMA_PYTORCH_WEIGHTS))
    return (stripped, removed, skipped) if unwrapped else (state, "", ())


def _recorded_sides(config: object, name: str, source: str) -> tuple[int, ...] | None:
    if not isinstance(config, Mapping) or config.get(name) is None:
        return None
    value = config[name]
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(
            f"{source}: ['trainer']['config'][{name!r}] is {value!r}, not a list of positive sides; the trainer "
            "state is damaged (save the state dict on its own to convert it)"
        )
    return tuple(value)


def _missing_trainer_entry(trainer: Mapping, source: str, entry: str) -> str:
    """A trainer state without the asked-for component: say which component it does hold."""
    held = [name for name in TRAINER_ENTRIES.values() if isinstance(trainer.get(name), Mapping)]
    message = f"{source} is a trainer state without ['trainer'][{entry!r}]"
    if held:
        kind = guess_kind(trainer[held[0]])
        holds = DESCRIPTIONS.get(kind, f"['trainer'][{held[0]!r}]")
        flag = f" (use {FLAGS[kind]} for it)" if kind else ""
        return f"{message}; it holds {holds}{flag}"
    return f"{message}; it holds none of {sorted(TRAINER_ENTRIES.values())}"
