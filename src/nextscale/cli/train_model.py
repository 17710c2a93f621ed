"""The transformer a ``nextscale train`` run starts from: a fresh one built from the preset, --depth and the shape
flags (the token interface always follows the tokenizer), or with --init-from a trained one moved onto the
tokenizer's schedule and adapted to the run (its classes, its regularisation, per-sample cross-attention)."""

from __future__ import annotations

import argparse

MODEL_FLAGS = ("num_classes", "embed_dim", "num_heads", "drop_path_rate", "cond_drop_rate", "shared_adaln")
TEXT_MODEL_FLAGS = ("embed_dim", "num_heads", "drop_path_rate", "cond_drop_rate", "rope_theta", "rope_norm")
DEFAULT_TEXT_PRESET = "fashion-scenes"
ROPE_FLAGS = {"rope_theta": "--rope-theta", "rope_norm": "--rope-norm"}


def build_transformer_config(args: argparse.Namespace, tokenizer_config, text_dim: int | None = None):
    """The transformer config from the preset, --depth and the shape flags; the token interface (and the text
    width of a text model) always follows the tokenizer (and the text encoder)."""
    import dataclasses

    from nextscale.presets import get_preset
    from nextscale.transformer.config import TransformerConfig
    from nextscale.transformer.text_config import TextTransformerConfig

    text = text_dim is not None
    if not text:
        refuse_rope_flags(args)
    if getattr(args, "raster", None):
        if text:
            raise ValueError("the raster baseline is class-conditional; train it without --text-encoder")
        return raster_config(args, tokenizer_config)
    name = args.preset or (DEFAULT_TEXT_PRESET if text else "var-d16")
    _, preset = get_preset(name)
    if isinstance(preset, TextTransformerConfig) != text:
        kind = "text" if text else "class-conditional"
        raise ValueError(f"preset {name!r} is not a {kind} model; pick a {'star-*' if text else 'var-*'} preset")
    flags = TEXT_MODEL_FLAGS if text else MODEL_FLAGS
    overrides = {name: getattr(args, name) for name in flags if getattr(args, name, None) is not None}
    fit = dict(
        vocab_size=tokenizer_config.vocab_size,
        code_dim=tokenizer_config.code_dim,
        scale_sides=tuple(tokenizer_config.scale_sides),
    )
    if text:
        fit["text_dim"] = text_dim
    if args.depth is not None:
        if text:
            return TextTransformerConfig.from_depth(args.depth, **{**fit, **overrides})
        keep = {"num_classes": preset.num_classes, "shared_adaln": preset.shared_adaln}
        return TransformerConfig.from_depth(args.depth, **{**keep, **fit, **overrides})
    return dataclasses.replace(preset, **fit, **overrides)


def refuse_rope_flags(args: argparse.Namespace) -> None:
    """--rope-theta / --rope-norm shape STAR's RoPE; a class model has learned positions and no RoPE."""
    given = [flag for name, flag in ROPE_FLAGS.items() if getattr(args, name, None) is not None]
    if given:
        raise ValueError(
            f"{' and '.join(given)} set a text model's RoPE; a class-conditional model has learned positions: drop "
            f"{'them' if len(given) > 1 else 'it'}"
        )


def raster_config(args: argparse.Namespace, tokenizer_config):
    """The raster baseline with the next-scale preset's (or --depth's) blocks, on the tokenizer's last map."""
    from nextscale.presets import get_preset
    from nextscale.transformer.config import TransformerConfig
    from nextscale.transformer.raster_config import RasterConfig

    _, preset = get_preset(args.preset or "var-d16")
    if not isinstance(preset, TransformerConfig):
        raise ValueError(f"preset {args.preset!r} is a text model; the raster baseline takes a var-* or class preset")
    if args.depth is not None:
        preset = TransformerConfig.from_depth(args.depth, num_classes=preset.num_classes)
    shared = ("depth", "embed_dim", "num_heads", "mlp_ratio", "drop_path_rate", "num_classes", "attn_l2_norm")
    shared += ("norm_eps", "cond_drop_rate", "dropout", "attn_dropout")
    fields = {name: getattr(preset, name) for name in shared}
    fields.update({name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name, None) is not None})
    if fields.pop("shared_adaln", None):
        raise ValueError("the raster baseline has no shared-AdaLN variant; drop --shared-adaln")
    return RasterConfig(**fields, vocab_size=tokenizer_config.vocab_size, side=tokenizer_config.scale_sides[-1])


def initial_transformer(args: argparse.Namespace, tokenizer_config, objective, text_dim: int | None):
    """A fresh transformer, or with --init-from a trained one moved onto the tokenizer's schedule."""
    from nextscale.training.export import load_transformer_weights
    from nextscale.training.transformer_trainer import build_transformer
    from nextscale.transformer.raster_model import RasterTransformer
    from nextscale.transformer.text_model import TextScaleTransformer, transfer_to_schedule

    if not args.init_from:
        return build_transformer(build_transformer_config(args, tokenizer_config, text_dim), objective)
    resumed = resumed_transformer(args.run_dir)
    if resumed is not None:  # --init-from is ignored once the run has a checkpoint: its starting model may be gone
        return adapted_for_fine_tuning(resumed.train(), args)
    model = load_transformer_weights(args.init_from).train()
    sides = tuple(tokenizer_config.scale_sides)
    if isinstance(model, TextScaleTransformer) != (text_dim is not None) or (
        isinstance(model, RasterTransformer) != bool(args.raster)
    ):
        raise ValueError(f"--init-from {args.init_from} is a {type(model).__name__}; it does not fit this run")
    if text_dim is not None and model.config.text_dim != text_dim:
        raise ValueError(f"--init-from model has text width {model.config.text_dim}, the encoder {text_dim}")
    if tuple(model.config.scale_sides) != sides:
        if not isinstance(model, TextScaleTransformer):
            raise ValueError(
                "resolution transfer needs a text (STAR) model: VAR's absolute position table is tied to its "
                f"schedule {model.config.scale_sides}"
            )
        model = transfer_to_schedule(model, sides)
    code_dim = getattr(model.config, "code_dim", tokenizer_config.code_dim)  # the raster model embeds token ids
    if (model.config.vocab_size, code_dim) != (tokenizer_config.vocab_size, tokenizer_config.code_dim):
        raise ValueError("--init-from model was trained with another tokenizer (vocabulary or code width differ)")
    return adapted_for_fine_tuning(model, args)


def resumed_transformer(run_dir):
    """The transformer of a run that has a checkpoint, as its config.json records it (already adapted to the run;
    the weights come from the checkpoint), or None for a run that starts now."""
    from nextscale.training import checkpoint as ckpt
    from nextscale.training.export import build_run_model, read_run_config, run_kind

    if not run_dir or not ckpt.list_checkpoints(run_dir) or run_kind(run_dir) != "transformer":
        return None
    return build_run_model(read_run_config(run_dir))


# Flags that would change the shape of an --init-from model (its weights fix them).
SHAPE_FLAGS = {
    "depth": "--depth",
    "embed_dim": "--embed-dim",
    "num_heads": "--num-heads",
    "shared_adaln": "--shared-adaln",
}


def adapted_for_fine_tuning(model, args: argparse.Namespace):
    """An --init-from model as this run trains it: the data's class count, the given regularisation, and
    per-sample cross-attention; a line for each change. Shape flags are refused (the weights fix the shape)."""
    import dataclasses

    from nextscale import distributed
    from nextscale.transformer.text_model import TextScaleTransformer

    given = [flag for name, flag in SHAPE_FLAGS.items() if getattr(args, name, None) not in (None, False)]
    if given:
        raise ValueError(f"--init-from fixes the model's shape; drop {', '.join(given)}")
    if not hasattr(model.config, "rope_theta"):
        refuse_rope_flags(args)
    # regularisation and a text model's RoPE settings are not shape: given, they change for the fine-tuning
    changes = {
        name: getattr(args, name)
        for name in ("drop_path_rate", "cond_drop_rate", "rope_theta", "rope_norm")
        if getattr(args, name, None) is not None
        and hasattr(model.config, name)
        and getattr(args, name) != getattr(model.config, name)
    }
    notes = [f"{name} {getattr(model.config, name)} -> {value}" for name, value in changes.items()]
    if getattr(args, "train_sampler_head", False) and not getattr(model.config, "sampler_head", False):
        # STAR's official head starts at scale 9; shorter schedules get a head for their last scale.
        num_scales = len(model.config.scale_sides)
        first = args.sampler_from_scale
        first = first if first is not None else (9 if num_scales > 9 else num_scales - 1)
        changes.update(sampler_head=True, sampler_from_scale=first)
        notes.append(f"a fresh masked-sampler head for scales {first}..{num_scales - 1} (the model frozen)")
    if getattr(model.config, "official_batch0_cross_attention", False):
        # A converted STAR checkpoint reproduces the official batch-0 cross-attention at sampling time; trained
        # that way, only the first caption of every batch would reach the cross-attention. The weights fit both.
        changes["official_batch0_cross_attention"] = False
        notes.append("cross-attention per sample (the converted model's official batch-0 behaviour is not trained)")
    table = None
    if not isinstance(model, TextScaleTransformer) and args.num_classes not in (None, model.config.num_classes):
        # Another class list means other classes: every class row starts as the trained null (unconditional)
        # row, so the fine-tuned model begins as the pretrained unconditional model for each of its classes.
        null_row = model.class_embedder.embedding.weight.detach()[-1:]
        table = null_row.repeat(args.num_classes + 1, 1)
        changes["num_classes"] = args.num_classes
        notes.append(
            f"{model.config.num_classes} -> {args.num_classes} classes (the data's); each starts as the "
            "pretrained null class"
        )
    if not changes:
        return model
    if distributed.is_main():  # every rank adapts its copy; one line says how
        print(f"--init-from {args.init_from}: " + "; ".join(notes), flush=True)
    adapted = type(model)(dataclasses.replace(model.config, **changes))
    state = model.state_dict()
    if table is not None:
        state["class_embedder.embedding.weight"] = table
    new_head = getattr(adapted, "sampler_head", None) is not None and not any(
        k.startswith("sampler_head.") for k in state
    )
    if new_head:  # the fresh head keeps its initial weights; every other entry must fit
        state.update({f"sampler_head.{k}": v for k, v in adapted.sampler_head.state_dict().items()})
    adapted.load_state_dict(state, strict=True)
    if new_head and args.sampler_head_init == "warm":
        adapted.sampler_head.warm_start(adapted.head)
    return adapted.train(model.training)


def starting_sampling(args: argparse.Namespace) -> dict:
    """The sampling settings the --init-from model recommends (its pipeline.json), recorded by a masked-sampler-head
    run so that its export keeps them: the head changes how the finest scales are drawn, not the cfg or top-k the
    model was tuned for. On a resume whose starting model is gone, the settings the run recorded at its start."""
    import json
    from pathlib import Path

    from nextscale.pretrained import read_json_file, resolve_model_path
    from nextscale.sampling.pipeline_folder import PIPELINE_FILE

    try:
        index = read_json_file(resolve_model_path(args.init_from) / PIPELINE_FILE, "")
        settings = index.get("recommended_sampling", {})
    except (OSError, ValueError, TypeError, AttributeError):  # a run directory, or a model that is gone
        try:
            settings = json.loads((Path(args.run_dir) / "config.json").read_text()).get("init_sampling", {})
        except (OSError, ValueError, AttributeError):
            settings = {}
    if not isinstance(settings, dict):
        return {}
    return {name: value for name, value in settings.items() if name != "masked_sampling"}
