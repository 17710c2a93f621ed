"""Where an official VAR / STAR checkpoint keeps its state dict, and which model a state dict is.

The same weights reach users packed in several ways; ``unwrap_official`` finds the state dict in each:

- a plain ``state_dict()`` (the released ``var_d*.pth`` and ``vae_ch160v4096z32.pth``);
- an official trainer state ``{"epoch", "iter", "trainer": {"config", "var_wo_ddp", "vae_local", "var_opt"}}``
  (the STAR releases, VAR's ``ar-ckpt-*.pth``): the transformer at ``["trainer"]["var_wo_ddp"]``, the VQVAE at
  ``["trainer"]["vae_local"]``, and the scale schedule (``patch_nums``) and image sides (``resos``) in
  ``["trainer"]["config"]``;
- one level of a common wrapper: ``{"model": sd}``, ``{"state_dict": sd}`` or ``{"ema": sd}``;
- keys that all start with ``module.`` (saved from a DDP wrapper) or ``_orig_mod.`` (from ``torch.compile``).

Our own checkpoints never need the last two (STYLE.md rule 10 saves the bare module); they are undone here
because the files come from other people's training code. Nothing here reads a file: callers load it
safely first (``pretrained.load_weights_only``) and pass the loaded object.

References: VAR_REFERENCE.md section 5 (trainer checkpoints), STAR_REFERENCE.md sections 6 and 10.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# The official trainer state's entry for each component.
TRAINER_ENTRIES = {"transformer": "var_wo_ddp", "vqvae": "vae_local"}
WRAPPERS = ("model", "state_dict", "ema")
PREFIXES = ("module.", "_orig_mod.")
# How a message names each kind of file, and the convert flag that reads it.
DESCRIPTIONS = {
    "VAR": "a VAR transformer checkpoint",
    "STAR": "a STAR transformer checkpoint",
    "VQVAE": "the VQVAE (tokenizer) checkpoint",
}
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
    """

    state: dict
    source: str
    location: str = ""
    prefix: str = ""
    patch_nums: tuple[int, ...] | None = None
    resos: tuple[int, ...] | None = None

    def notes(self) -> list[str]:
        """What was undone to reach the state dict, for the converter's summary line."""
        notes = [f"read {self.location}"] if self.location else []
        return notes + ([f"stripped key prefix {self.prefix!r}"] if self.prefix else [])


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


def check_kind(checkpoint: OfficialState, expected: str, what: str) -> None:
    """Refuse a state dict of another known kind, naming the flag it belongs to (swapped files)."""
    kind = guess_kind(checkpoint.state)
    if kind is not None and kind != expected:
        raise ValueError(
            f"{checkpoint.source} is not an official {what}: it looks like {DESCRIPTIONS[kind]} "
            f"(use {FLAGS[kind]} for it)"
        )


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
    state, prefix = _strip_prefixes(dict(state))
    return OfficialState(
        state,
        source,
        location,
        prefix,
        patch_nums=_recorded_sides(config, "patch_nums", source),
        resos=_recorded_sides(config, "resos", source),
    )


def _strip_prefixes(state: dict) -> tuple[dict, str]:
    """Remove ``module.`` / ``_orig_mod.`` while every key starts with one (``module._orig_mod.`` too)."""
    removed = ""
    while state:
        prefix = next((p for p in PREFIXES if all(isinstance(k, str) and k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {key[len(prefix) :]: value for key, value in state.items()}
        removed += prefix
    return state, removed


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
