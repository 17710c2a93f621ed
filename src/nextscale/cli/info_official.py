"""`nextscale info` on an official VAR / STAR / VQ-VAE checkpoint file: its kind, size, shape and how to convert it
(the only report that loads weights, safely, since the shape is in the tensors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nextscale.cli.info_format import millions


def describe_official_file(path: Path) -> dict[str, Any]:
    """An official VAR / STAR transformer or VQ-VAE state dict (plain, wrapped or a trainer state)."""
    from nextscale.official_files import guess_kind, unwrap_official
    from nextscale.pretrained import load_weights_only

    loaded = load_weights_only(path)
    for component in ("transformer", "vqvae"):
        try:
            checkpoint = unwrap_official(loaded, str(path), component)
        except ValueError:
            continue
        kind = guess_kind(checkpoint.state)
        if kind is not None:
            break
    else:
        raise ValueError(
            f"{path} is neither a nextscale checkpoint nor an official VAR, STAR or VQ-VAE state dict; "
            "`nextscale info` reads pipeline folders, runs, token folders and those files"
        )
    count = sum(value.numel() for value in checkpoint.state.values() if hasattr(value, "numel"))
    report: dict[str, Any] = {
        "what": f"{path}: an official {kind} checkpoint",
        "parameters": millions(count),
    }
    if checkpoint.location or checkpoint.prefix:
        report["found"] = "; ".join(checkpoint.notes())
    if kind == "VAR":
        from nextscale.transformer.official import infer_official_config

        config = infer_official_config(checkpoint.state, checkpoint.patch_nums)
        report["shape"] = f"depth {config.depth}, width {config.embed_dim}, {config.num_classes} classes"
        report["scales"] = ", ".join(map(str, config.scale_sides))
        report["convert"] = f"nextscale convert --var {path} --vae VAE.pth --out DIR"
    elif kind == "STAR":
        from nextscale.transformer.text_official import infer_official_star_config

        config = infer_official_star_config(checkpoint.state, patch_nums=checkpoint.patch_nums, resos=checkpoint.resos)
        recorded = checkpoint.patch_nums is not None or checkpoint.resos is not None
        report["shape"] = f"depth {config.depth}, width {config.embed_dim}, text width {config.text_dim}" + (
            f", masked-sampler head ({config.sampler_depth} blocks; sample with --masked-sampling)"
            if config.sampler_head
            else ""
        )
        report["scales"] = ", ".join(map(str, config.scale_sides)) + (
            ""
            if recorded
            else " (not recorded in the file: the released schedule of this many scales; "
            "convert --image-size picks another)"
        )
        report["convert"] = f"nextscale convert --star {path} --vae VAE.pth --text-encoder DIR --out DIR"
    else:
        report["convert"] = f"nextscale convert --var VAR.pth --vae {path} --out DIR (the VQ-VAE of a pipeline)"
    return report
