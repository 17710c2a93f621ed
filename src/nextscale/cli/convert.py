"""Convert the official VAR or STAR checkpoints into a pipeline folder.

Examples:
    nextscale convert --vae vae_ch160v4096z32.pth --var var_d16.pth --out var-d16/
    nextscale sample --model var-d16/ --class 207 --seed 0 --out d16.png
    nextscale convert --vae vae_ch160v4096z32.pth --star star-256-d16.pth --text-encoder clip-sd21/ --out star/
    nextscale sample --model star/ --prompt "a red apple" --seed 1

Depth, width, heads, shared AdaLN, the scale schedule, the text width and the tokenizer width are read
from the state dicts (loaded with torch.load(weights_only=True), or safetensors: no code in the files is
run). Each flag takes a plain state dict, an official trainer state (the transformer at
["trainer"]["var_wo_ddp"], the VQVAE at ["trainer"]["vae_local"], so one trainer file may serve --vae and
--var/--star), a {"model" | "state_dict" | "ema": state dict} wrapper (a PyTorch Lightning checkpoint too), or a
.safetensors file; "module.", "_orig_mod." and "model." key prefixes (DDP, torch.compile, Lightning) are stripped,
and an ema-pytorch EMA state gives its averaged "ema_model." weights. The summary line says what was undone. A VQVAE
whose codebook the transformer was not trained on is refused, naming both files.

What STAR weights cannot tell comes from the trainer state's recorded schedule (trainer.config.patch_nums)
or flags: --image-size (10 scales are 256 px unless 512 is given, and a line says so; 14 scales are
1024 px) and the RoPE settings (released: theta 10000, N 64). VAR's schedule is read from its weights, so
--image-size there is only checked. The released STAR weights were trained with the official code's
batch-0 cross-attention (sample 0's text reaches every row), so the converted model reproduces it; pass
--per-sample-cross-attention for the corrected behaviour. Without --text-encoder the folder samples from
precomputed text features only (--text-features). The folder records the official sampling settings as
its recommended ones (VAR: the FID settings cfg 1.5, top-k 900, top-p 0.96; STAR: sample.py's cfg 4.5,
top-k 600, top-p 0.8; the star-1024-sampler file: the gradio demo's cfg 4.0, top-k 600, top-p 0.8 with masked
sampling), used by `sample` and `edit` for flags left out. The converted pipelines reproduce
the official logits and, with the same seed on a CPU, the official sampled tokens.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nextscale.cli.convert_output import check_out, write_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--vae",
        type=Path,
        required=True,
        help="official tokenizer checkpoint (vae_ch160v4096z32.pth, or a trainer state holding it)",
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--var", type=Path, help="official VAR transformer checkpoint (var_d16.pth, ar-ckpt-last.pth)")
    model.add_argument("--star", type=Path, help="official STAR checkpoint (trainer state or state dict)")
    parser.add_argument("--out", type=Path, required=True, help="output pipeline folder (new or empty)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the pipeline in a non-empty --out (pipeline.json, tokenizer/, transformer/, text_encoder/; "
        "other files stay)",
    )
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    parser.add_argument(
        "--image-size",
        type=int,
        choices=(256, 512, 1024),
        default=None,
        help="training resolution. STAR: picks the 10-scale schedule (default 256) unless the trainer state "
        "records it; VAR: the schedule comes from the weights and a different value is refused",
    )
    star = parser.add_argument_group("STAR")
    star.add_argument(
        "--text-encoder",
        default=None,
        metavar="DIR",
        help="local Hugging Face folder of the text encoder (CLIP text tower of width 1024 for the releases), or "
        "'default' for the bundled MiniLM; its path (or package) is recorded in the pipeline folder",
    )
    star.add_argument(
        "--copy-text-encoder",
        action="store_true",
        help="copy the text encoder's files into the pipeline folder instead of recording their path",
    )
    star.add_argument(
        "--text-max-length",
        type=int,
        default=None,
        metavar="N",
        help="tokens per prompt (default: the encoder folder's limit, 77 for CLIP); STAR's T5 ablation used 120",
    )
    star.add_argument(
        "--text-pooling",
        default=None,
        metavar="NAME",
        help="the encoder's pooled vector (default: its kind's: CLIP eos, T5 mean); STAR's T5 ablation averaged every "
        "position, padding included: mean_all",
    )
    star.add_argument("--rope-theta", type=float, default=None, help="RoPE base (default: 10000)")
    star.add_argument("--rope-norm", type=float, default=None, help="RoPE coordinate range N (default: 64)")
    star.add_argument(
        "--per-sample-cross-attention",
        action="store_true",
        help="use each sample's own cross-attention instead of the official batch-0 behaviour",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    for flag, path in (("--vae", args.vae), ("--var", args.var), ("--star", args.star)):
        check_checkpoint_file(flag, path)
    if args.star is None:
        star_only = {
            "--text-encoder": args.text_encoder is not None,
            "--text-max-length": args.text_max_length is not None,
            "--text-pooling": args.text_pooling is not None,
            "--rope-theta": args.rope_theta is not None,
            "--rope-norm": args.rope_norm is not None,
            "--per-sample-cross-attention": args.per_sample_cross_attention,
        }
        given = [flag for flag, is_given in star_only.items() if is_given]
        if given:  # VAR has no text and no RoPE: ignoring them would hide a mix-up of files or flags
            raise ValueError(f"{' and '.join(given)} go with --star (VAR models are class-conditional, without RoPE)")
    if args.copy_text_encoder and args.text_encoder is None:
        raise ValueError("--copy-text-encoder needs --text-encoder DIR (the encoder whose files to copy)")
    for flag, value in (("--text-max-length", args.text_max_length), ("--text-pooling", args.text_pooling)):
        if value is not None and args.text_encoder is None:
            raise ValueError(f"{flag} sets how --text-encoder DIR encodes prompts; give the encoder too")
    check_out(args.out, args.overwrite)
    dtype = torch.float16 if args.half else None
    pipe, summary = convert_var(args) if args.star is None else convert_star(args)
    check_finite(pipe, args)
    write_pipeline(args.out, lambda folder: save(pipe, folder, dtype, args.copy_text_encoder))
    print(f"wrote {args.out}: {summary}")
    return 0


def convert_var(args: argparse.Namespace):
    from nextscale.sampling.pipeline import Pipeline
    from nextscale.tokenizer.official import load_official_vqvae, read_official_vqvae
    from nextscale.transformer.official import OFFICIAL_SAMPLING, load_official_var, read_official_var

    checkpoint = read_official_var(args.var)
    transformer = load_official_var(checkpoint)
    vae = read_official_vqvae(args.vae)
    tokenizer = load_official_vqvae(vae, scale_sides=transformer.config.scale_sides)
    check_trained_together(tokenizer, transformer, args)
    pipe = Pipeline(tokenizer, transformer).recommend(**OFFICIAL_SAMPLING)
    config = transformer.config
    if args.image_size is not None and args.image_size != pipe.image_size:
        raise ValueError(
            f"--image-size {args.image_size} contradicts the VAR weights: their scale schedule {config.scale_sides} "
            f"gives {pipe.image_size} px; leave --image-size out (VAR's schedule is read from the weights)"
        )
    summary = (
        f"VAR depth {config.depth} (width {config.embed_dim}, {config.num_heads} heads, shared AdaLN "
        f"{config.shared_adaln}), scales {config.scale_sides}, image size {pipe.image_size}px, "
        f"{recommended(pipe, 'official FID settings')}"
    )
    return pipe, summary + source_notes({"--var": checkpoint, "--vae": vae})


def convert_star(args: argparse.Namespace):
    from nextscale.sampling.text_pipeline import TextPipeline
    from nextscale.tokenizer.official import load_official_vqvae, read_official_vqvae
    from nextscale.transformer.text_official import (
        OFFICIAL_SAMPLER_SAMPLING,
        OFFICIAL_SAMPLING,
        assumed_image_size,
        load_official_star,
        read_official_star,
    )

    checkpoint = read_official_star(args.star)
    rope = {name: value for name in ("rope_theta", "rope_norm") if (value := getattr(args, name)) is not None}
    transformer = load_official_star(
        checkpoint,
        image_size=args.image_size,
        batch0_cross_attention=not args.per_sample_cross_attention,
        **rope,
    )
    vae = read_official_vqvae(args.vae)
    tokenizer = load_official_vqvae(vae, scale_sides=transformer.config.scale_sides)
    check_trained_together(tokenizer, transformer, args)
    text_encoder = None
    if args.text_encoder is not None:
        from nextscale.cli.common import load_text_encoder_option

        text_encoder = load_text_encoder_option(args.text_encoder, args.text_pooling, args.text_max_length)
    sampler = transformer.config.sampler_head
    settings = OFFICIAL_SAMPLER_SAMPLING if sampler else OFFICIAL_SAMPLING
    pipe = TextPipeline(tokenizer, transformer, text_encoder).recommend(**settings)
    assumed = assumed_image_size(checkpoint, args.image_size)
    if assumed is not None:  # once everything else has loaded, so that it does not precede an error
        print(
            f"note: {args.star} does not record its scale schedule and 10 scales fit 256 or 512 px; assumed "
            f"{assumed} px (pass --image-size 512 for a model trained at 512 px)",
            file=sys.stderr,
        )
    config = transformer.config
    if text_encoder is None:
        encoder = "no text encoder (sample with --text-features)"
    else:
        how = "files copied into the folder" if args.copy_text_encoder else "its location recorded"
        encoder = f"text encoder {args.text_encoder} ({how})"
    mode = "official batch-0" if config.official_batch0_cross_attention else "per-sample"
    head = f", masked-sampler head from scale {config.sampler_from_scale}" if sampler else ""
    origin = "the official gradio demo's settings" if sampler else "official sample.py settings"
    summary = (
        f"STAR depth {config.depth} (width {config.embed_dim}, {config.num_heads} heads, text width "
        f"{config.text_dim}), scales {config.scale_sides}, image size {pipe.image_size}px, {mode} cross-attention"
        f"{head}, {encoder}, {recommended(pipe, origin)}"
    )
    return pipe, summary + source_notes({"--star": checkpoint, "--vae": vae})


def save(pipe, folder: Path, dtype, copy_text_encoder: bool) -> None:
    if copy_text_encoder:
        pipe.save_pretrained(folder, dtype=dtype, copy_text_encoder=True)
    else:
        pipe.save_pretrained(folder, dtype=dtype)


def recommended(pipe, origin: str) -> str:
    """``recommended sampling cfg 1.5, top-k 900, top-p 0.96 (official FID settings)``."""
    settings = ", ".join(f"{name.replace('_', '-')} {value}" for name, value in pipe.recommended_sampling.items())
    return f"recommended sampling {settings} ({origin})"


def source_notes(checkpoints: dict) -> str:
    """``; --var: read ['model'], stripped key prefix 'module.'`` for each file that needed unwrapping."""
    notes = [
        f"{flag}: {', '.join(checkpoint.notes())}" for flag, checkpoint in checkpoints.items() if checkpoint.notes()
    ]
    return "".join(f"; {note}" for note in notes)


def check_trained_together(tokenizer, transformer, args: argparse.Namespace) -> None:
    """Refuse a VQVAE whose codebook the transformer does not predict, naming both files and their sizes (the
    pipeline's own check cannot say which flag to change)."""
    flag, model = ("--var", args.var) if args.star is None else ("--star", args.star)
    for what, tokenizer_size, transformer_size in (
        ("codebook size", tokenizer.config.vocab_size, transformer.config.vocab_size),
        ("code width", tokenizer.config.code_dim, transformer.config.code_dim),
    ):
        if tokenizer_size != transformer_size:
            raise ValueError(
                f"--vae {args.vae} has {what} {tokenizer_size} but {flag} {model} was trained with {what} "
                f"{transformer_size}: the two files are not from one model; give --vae the VQVAE the transformer was "
                "trained with (vae_ch160v4096z32.pth for the released models), or the matching transformer"
            )


def check_finite(pipe, args: argparse.Namespace) -> None:
    """Refuse weights with NaN or infinity before writing: the folder would convert but never load (loading refuses
    them), and sampling from them gives black images; with --half, also weights that float16 cannot hold."""
    import torch

    flag = "--var" if args.star is None else "--star"
    for component, source in (
        (pipe.transformer, f"{flag} {args.var or args.star}"),
        (pipe.tokenizer, f"--vae {args.vae}"),
    ):
        bad = [
            name
            for name, tensor in component.state_dict().items()
            if tensor.is_floating_point() and not tensor.isfinite().all()
        ]
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise ValueError(
                f"{source} holds non-finite weights (NaN or inf in {shown}): the training it comes from had diverged, "
                "or the file is damaged; convert another checkpoint, or fetch the file again"
            )
        half_max = torch.finfo(torch.float16).max
        too_large = [
            name
            for name, tensor in component.state_dict().items()
            if args.half and tensor.is_floating_point() and tensor.abs().max() > half_max
        ]
        if too_large:  # they would become inf in the float16 file, which then never loads
            raise ValueError(
                f"{source} holds weights beyond float16's range (|w| > {half_max:g} in {too_large[0]}); convert "
                "without --half"
            )


def check_checkpoint_file(flag: str, path: Path | None) -> None:
    """Before anything is loaded: a checkpoint flag must name an existing file, not a folder."""
    if path is None:
        return
    if path.is_dir():
        raise IsADirectoryError(f"{flag} {path} is a folder; give the checkpoint file itself (a .pth file)")
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} not found; give the path of the official checkpoint file")
