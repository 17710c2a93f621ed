"""What a path holds, for `nextscale info PATH`: a pipeline, training run, token folder, sample folder, sweep,
component folder, training data or official checkpoint, described from its config files, metrics and safetensors
headers (no weights are loaded, except an official checkpoint's, safely)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from nextscale.training.crop_margin import CROP_MARGIN_FIELD

# Files that say what their folder is (`info FOLDER/pipeline.json` describes FOLDER).
FOLDER_MARKERS = ("pipeline.json", "config.json", "manifest.json", "sweep.json", "sample-settings.json")


# ---------------------------------------------------------------------------------------------- a path
def describe(text: str) -> dict[str, Any]:
    """The facts about one path (a pipeline folder, training run, token folder, sample folder, component folder or
    checkpoint file); a ValueError naming what each kind would hold when it is none of them."""
    from nextscale.pretrained import BUNDLED_PREFIX, resolve_model_path
    from nextscale.training.data_specs import CAPTIONS_PREFIX, FASHION_PREFIX
    from nextscale.training.export import run_kind

    if text == FASHION_PREFIX or text.startswith((FASHION_PREFIX + ":", CAPTIONS_PREFIX)):
        return describe_data(text)
    path = resolve_model_path(text)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        if (path / "pipeline.json").is_file():
            return describe_pipeline(path, shown=text if text.startswith(BUNDLED_PREFIX) else None)
        if run_kind(path) is not None:
            return describe_run(path)
        if (path / "manifest.json").is_file():
            return describe_tokens(path)
        if (path / "sweep.json").is_file():
            return describe_sweep(path)
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return {"what": f"{path}: a model component folder", **component_facts(path)}
        if (path / "sample-settings.json").is_file():  # sample_files.SETTINGS_FILE
            return describe_samples(path)
        if _holds_class_folders(path):
            return describe_data(text)
        if _only_run_lock(path):
            return describe_unstarted_run(path)
        from nextscale.data.image_listing import IMAGE_EXTENSIONS
        from nextscale.training.caption_prefix_checks import captioned_data_in

        # loose images, or a manifest or shards (with images in a sub-folder): captioned data, read as captions:
        loose = captioned_data_in(path) is not None or any(
            child.suffix.lower() in IMAGE_EXTENSIONS for child in path.iterdir() if child.is_file()
        )
        raise ValueError(
            f"{path} is not a nextscale folder: a pipeline holds pipeline.json, a training run config.json with "
            "its kind, a token folder manifest.json, a scaling sweep sweep.json, a `sample --out-dir` folder "
            "sample-settings.json, image data class sub-folders"
            + (f"; for its captioned images: `nextscale info captions:{text}`" if loose else "")
        )
    if path.name == "model.safetensors" and (path.parent / "config.json").is_file():
        return describe(str(path.parent))
    if path.name in FOLDER_MARKERS:  # the file that makes its folder a pipeline, run, ...: the folder is meant
        return describe(str(path.parent))
    from nextscale.data.image_listing import IMAGE_EXTENSIONS
    from nextscale.training.checkpoint import checkpoint_step

    if path.suffix.lower() in IMAGE_EXTENSIONS:  # a grid or sample nextscale wrote, most likely: not a checkpoint
        raise ValueError(
            f"{path} is an image; `nextscale info` reads pipeline and component folders, training runs and their "
            "checkpoints, token folders, `sample --out-dir` folders, scaling sweeps, official VAR/STAR .pth files "
            "and training data (class sub-folders of images, captions:DIR, fashion-mnist[:DIR]); give one of those"
        )
    try:
        step = checkpoint_step(path)
    except ValueError:
        return describe_official_file(path)
    return describe_checkpoint(path, step)


def component_facts(folder: Path) -> dict[str, Any]:
    """A component folder's class, parameter count and weight format (from the safetensors header), and shape."""
    from safetensors import SafetensorError, safe_open

    from nextscale.pretrained import read_json_file

    saved = read_json_file(folder / "config.json", f"{folder} is not a component folder")
    config = saved.get("config", {}) if isinstance(saved.get("config"), dict) else {}
    count, dtypes = 0, set()  # the weights' formats: integer buffers (a step counter) are no weights
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                piece = weights.get_slice(key)
                shape = piece.get_shape()
                count += math.prod(shape)
                if piece.get_dtype().startswith(("F", "BF")):
                    dtypes.add(piece.get_dtype())
    except SafetensorError as err:  # not an OSError or ValueError: it would end `info` in a traceback
        raise ValueError(
            f"{folder / 'model.safetensors'} could not be read ({err}); the file is corrupt or truncated"
        ) from err
    facts = {
        "class": saved.get("class", "?"),
        "parameters": _millions(count),
        "weights": "/".join(sorted(dtypes)),
    }
    shape = ("depth", "embed_dim", "num_heads", "num_classes", "vocab_size", "code_dim", "text_dim", "scale_sides")
    shape += ("sampler_head", "sampler_from_scale")
    return facts | {key: config[key] for key in shape if key in config}


def describe_pipeline(folder: Path, shown: str | None = None) -> dict[str, Any]:
    """A pipeline folder from its files; ``shown``: the ``bundled:NAME`` it was named by, which the headline and the
    suggested command use (the folder's place inside the installed package is no name to type)."""
    from nextscale.pretrained import read_json_file
    from nextscale.sampling.pipeline_folder import check_index
    from nextscale.tokenizer.config import TokenizerConfig

    spec = read_json_file(folder / "pipeline.json", f"{folder} is not a pipeline folder")
    check_index(spec, folder / "pipeline.json")  # what loading refuses: e.g. a component named by a number
    kind = spec.get("_class_name", "?")
    name = shown or str(folder)
    bundled = f" ({shown}, shipped inside the nextscale package)" if shown else ""
    report: dict[str, Any] = {"what": f"{folder}: a {kind} folder{bundled}"}
    transformer = component_facts(folder / spec.get("transformer", "transformer"))
    tokenizer = component_facts(folder / spec.get("tokenizer", "tokenizer"))
    tokenizer_config = read_json_file(folder / spec.get("tokenizer", "tokenizer") / "config.json", "").get("config", {})
    factor = 2 ** (len(tokenizer_config.get("channel_multipliers", TokenizerConfig.channel_multipliers)) - 1)
    sides = transformer.get("scale_sides") or tokenizer.get("scale_sides") or []
    if sides:
        side = sides[-1] * factor
        channels = tokenizer_config.get("in_channels", 3)
        report["images"] = f"{side}x{side} px, " + {1: "grayscale", 3: "RGB"}.get(channels, f"{channels} channels")
        report["scales"] = f"{len(sides)} ({', '.join(map(str, sides))}), {sum(s * s for s in sides)} tokens"
        if kind == "RasterPipeline":
            report["scales"] = (
                f"none: the raster-scan baseline, one {sides[-1]}x{sides[-1]} map whose {sides[-1] ** 2} tokens are "
                "drawn one at a time (no editing)"
            )
    report["transformer"] = _component_line(transformer)
    report["tokenizer"] = _component_line(tokenizer)
    if trained := _exported_from(folder / spec.get("transformer", "transformer")):
        report["trained_weights"] = trained
    names = spec.get("class_names")
    if names:
        shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
        report["classes"] = shown
    elif "num_classes" in transformer:
        report["classes"] = f"{transformer['num_classes']} (by id; no names recorded)"
    if spec.get("text_encoder"):
        report["text_encoder"] = _text_encoder_line(folder / spec["text_encoder"])
    if spec.get("recommended_sampling"):
        report["recommended_sampling"] = spec["recommended_sampling"]
    report["try"] = (
        f"nextscale sample --model {name} --prompt 'a photo' --out grid.png"
        if spec.get("text_encoder") or "text_dim" in transformer
        else f"nextscale sample --model {name} --class all --out grid.png"
    )
    return report


def _component_line(facts: dict[str, Any]) -> str:
    shape = ", ".join(
        f"{key.replace('_', ' ')} {facts[key]}"
        for key in ("depth", "embed_dim", "num_heads", "vocab_size", "code_dim")
        if key in facts
    )
    head = (
        f"; masked-sampler head from scale {facts.get('sampler_from_scale')} (sample with --masked-sampling)"
        if facts.get("sampler_head")
        else ""
    )
    return (
        f"{facts['class']}, {facts['parameters']} parameters ({facts['weights']})"
        + (f"; {shape}" if shape else "")
        + head
    )


def _exported_from(component: Path) -> str | None:
    """ "EMA weights of step 2 (checkpoints/step-00000002.pt)" from an exported component's export.json; None for a
    folder without one (saved by save_pretrained, converted, or exported before the record existed)."""
    from nextscale.training.export import read_export_record

    record = read_export_record(component)
    if record is None:
        return None
    weights = "EMA weights" if record.weights == "ema" else "raw (non-EMA) weights"
    return f"{weights} of training step {record.step} ({record.checkpoint} of the run it was exported from)"


def _text_encoder_line(folder: Path) -> str:
    """What a pipeline's text_encoder/ folder points at, read from its reference file (the encoder is not loaded)."""
    from nextscale.pretrained import read_json_file
    from nextscale.text.loading import package_model_path
    from nextscale.text.reference import REFERENCE_NAME

    if not (folder / REFERENCE_NAME).is_file():
        return f"a copy in {folder}" if (folder / "config.json").is_file() else f"missing: {folder} is empty"
    reference = read_json_file(folder / REFERENCE_NAME, "")
    width = f"width {reference.get('width')}, {reference.get('kind')} encoder"
    if "package" in reference:
        where = f"the PyPI package {reference['package']}" + _found_note(package_model_path, reference["package"])
    else:
        path = Path(reference.get("path", ""))
        path = path if path.is_absolute() else folder / path
        where = f"{path}" + ("" if path.exists() else " (NOT found: moved or deleted)")
    return f"{where}, {width}"


def _found_note(locate, *args) -> str:
    try:
        locate(*args)
    except (OSError, ValueError) as err:
        return f" (NOT usable: {err})"
    return ""


def describe_run(folder: Path) -> dict[str, Any]:
    from nextscale.training.checkpoint import checkpoint_step, list_checkpoints
    from nextscale.training.export import read_run_config

    config = read_run_config(folder)
    train, model = config.get("train", {}), config.get(config["kind"], {})
    if not isinstance(train, dict) or not isinstance(model, dict):  # else an AttributeError traceback
        raise ValueError(
            f"{folder / 'config.json'} is damaged: its 'train' and {config['kind']!r} entries must be JSON objects; "
            "re-create the run, or restore the file"
        )
    total = train.get("total_steps")
    checkpoints = list_checkpoints(folder)
    step = checkpoint_step(checkpoints[-1]) if checkpoints else 0
    model_class = f" ({config['model_class']})" if "model_class" in config else ""
    report: dict[str, Any] = {"what": f"{folder}: a {config['kind']} training run{model_class}"}
    report["progress"] = f"step {step} of {total}" + _progress_state(folder, step == total)
    report["data"] = _run_data(config)
    shape = {key: model[key] for key in ("depth", "embed_dim", "vocab_size", "scale_sides") if key in model}
    if shape:
        report["model"] = shape
    if CROP_MARGIN_FIELD in config:
        report["crop_margin"] = _margin_line(config[CROP_MARGIN_FIELD])
    report["batch"] = f"{train.get('batch_size')} per step, precision {train.get('precision')}"
    report["checkpoints"] = [path.name for path in checkpoints] or "none yet"
    train_line, eval_line, eval_ema_line = _last_metrics(folder / "metrics.jsonl")
    if train_line:
        report["last_train"] = train_line
    if eval_line:
        report["last_eval"] = eval_line
    if eval_ema_line:  # the held-out metrics of the EMA weights, the ones export writes
        report["last_eval_ema"] = eval_ema_line
    speed = float(train_line.get("samples_per_second", 0) or 0)
    if isinstance(total, int) and step < total and speed > 0 and train.get("batch_size"):
        seconds = (total - step) * train["batch_size"] / speed
        report["time_left"] = f"about {_duration(seconds)} at the last logged speed ({speed:.4g} samples/s)"
    if config["kind"] == "transformer" and checkpoints:
        report["next"] = f"nextscale export --run {folder} --out DIR  (or sample --model {folder})"
    elif config["kind"] == "tokenizer" and checkpoints:
        data = config.get("data") or "DATA"
        report["next"] = (
            f"nextscale tokenize --tokenizer {folder} --data {data} --out DIR  (then train --tokenizer {folder} "
            "--tokens DIR)"
        )
    return report


def _progress_state(folder: Path, finished: bool) -> str:
    """After "step S of T": finished, training now (a re-run would be refused as in use), or stopped."""
    from nextscale.training.run_lock import training_process

    if finished:
        return " (finished)"
    pid = training_process(folder)
    if pid is not None:
        return f" (training now, process {pid}: newer checkpoints will follow)"
    return " (re-run its command to continue)"


def _run_data(config: dict[str, Any]) -> str:
    """What a run trains on: its --tokens folder (and the --data its held-out images come from) or its --data."""
    tokens, data = config.get("tokens"), config.get("data")
    if tokens:
        return f"token folder {tokens}" + (f"; held-out images from {data}" if data else "")
    return data or "? (not recorded)"


def _margin_line(margin: Any) -> str:
    """How a recorded crop margin crops (see ``nextscale.training.crop_margin``)."""
    if margin == 1:
        return "1 (the crops keep the whole shorter side)"
    return f"{margin:g} (shorter side resized to {margin:g}x the crop, then cropped)"


# The metrics log's splits that info shows: training steps, held-out metrics of the raw and of the EMA weights.
SHOWN_SPLITS = ("train", "eval", "eval_ema")


def _last_metrics(path: Path) -> tuple[dict[str, str], ...]:
    """The last record of each of :data:`SHOWN_SPLITS` in a metrics log (empty when none), summarised by
    :func:`_metrics_summary`."""
    last: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill: the records before it still count
            if isinstance(record, dict) and record.get("split") in SHOWN_SPLITS:
                last[record["split"]] = record
    # eval records carry every scale: their count also pads a train record whose last scales had no value
    scales = [key.partition("/scale")[2] for record in last.values() for key in record]
    num_scales = 1 + max((int(scale) for scale in scales if scale.isdigit()), default=-1)
    return tuple(_metrics_summary(last.get(split, {}), num_scales) for split in SHOWN_SPLITS)


def _metrics_summary(record: dict[str, Any], num_scales: int = 0) -> dict[str, str]:
    """One record as name -> value (4 significant digits); per-scale entries ("psnr/scale0", ...) as one list of
    at least ``num_scales`` entries in scale order, "-" for a scale the record has no value for (a step that kept
    none of its tokens)."""
    summary: dict[str, str] = {}
    per_scale: dict[str, dict[int, str]] = {}
    for key, value in record.items():
        if key == "split":
            continue
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        name, _, scale = key.partition("/scale")
        if scale.isdigit():
            per_scale.setdefault(name, {})[int(scale)] = shown
        else:
            summary[key] = shown
    for name, by_scale in per_scale.items():
        count = max(num_scales, max(by_scale) + 1)
        summary[name] = "[" + " ".join(by_scale.get(k, "-") for k in range(count)) + "]"
    return summary


def describe_samples(folder: Path) -> dict[str, Any]:
    """A `nextscale sample --out-dir` folder: how many of its images are there, and the settings that made them."""
    from nextscale.cli.sample_files import SAMPLE_IMAGE, SETTINGS_FILE

    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{folder / SETTINGS_FILE} is damaged ({err}); delete it, or choose another --out-dir"
        ) from err
    if not isinstance(settings, dict):
        raise ValueError(f"{folder / SETTINGS_FILE} is damaged (not a JSON object); delete it")
    count = sum(1 for path in folder.iterdir() if SAMPLE_IMAGE.fullmatch(path.name))
    num, groups = settings.get("--num"), settings.get("--class") or settings.get("--prompt")
    expected = num * len(groups) if isinstance(num, int) and isinstance(groups, list) else num
    if settings.get("--text-features"):
        expected = None  # rows of the features file times --num: the file is not read here
    report: dict[str, Any] = {"what": f"{folder}: images of `nextscale sample --out-dir`"}
    report["images"] = f"{count}" + (f" of {expected}" if isinstance(expected, int) else "")
    recorded = {flag: value for flag, value in settings.items() if value is not None}
    # Two entries are no flags: what tells the model's weights apart, so a re-run resumes only on the same ones.
    if "--checkpoint" in recorded:
        report["checkpoint"] = f"{recorded.pop('--checkpoint')} (the run's newest when sampled)"
    if "--model-weights" in recorded:
        fingerprint = recorded.pop("--model-weights")
        report["weights"] = f"fingerprint {fingerprint} of the model's weight files (a re-run resumes only on them)"
    report["settings"] = recorded
    evaluate = f"nextscale evaluate --samples {folder} --reference DIR"
    if not isinstance(expected, int):
        report["next"] = f"{evaluate} (once the sampling command has finished: re-running it resumes)"
    elif count < expected:
        report["next"] = "re-run the same `nextscale sample` command to make the missing images"
    else:
        report["next"] = evaluate
    return report


def describe_tokens(folder: Path) -> dict[str, Any]:
    from nextscale.data.token_manifest import read_manifest

    manifest = read_manifest(folder)
    sides = manifest["scale_sides"]
    report: dict[str, Any] = {
        "what": f"{folder}: a token folder",
        "sequences": f"{manifest['count']} in {_count(len(manifest['shards']), 'shard')} ({manifest['dtype']})"
        + (f", {manifest['views']} views (random crops) each" if manifest.get("views", 1) > 1 else ""),
        "scales": f"{len(sides)} ({', '.join(map(str, sides))}), {manifest['total_tokens']} tokens",
        "vocabulary": manifest["vocab_size"],
        "condition": manifest.get("condition", "class"),
        "source": manifest.get("source") or "?",
    }
    if CROP_MARGIN_FIELD in manifest:
        report["crop_margin"] = _margin_line(manifest[CROP_MARGIN_FIELD])
    if manifest.get("class_names"):
        report["classes"] = len(manifest["class_names"])
    if manifest.get("left_out"):
        report["left_out"] = _left_out_line(manifest["left_out"])
    return report


LEFT_OUT_NAMED = 3  # the undecodable files `info` names; manifest.json lists them all


def _left_out_line(left_out: list[str]) -> str:
    """ "2 undecodable images: a.jpg, b.png" (the first ``LEFT_OUT_NAMED`` of them named, then "..." and where the
    rest are listed)."""
    named = ", ".join(str(name) for name in left_out[:LEFT_OUT_NAMED])
    more = f", ... (all {len(left_out)} in manifest.json)" if len(left_out) > LEFT_OUT_NAMED else ""
    return f"{_count(len(left_out), 'undecodable image')}: {named}{more}"


def _count(number: int, noun: str) -> str:
    """ "1 shard", "2 shards"."""
    return f"{number} {noun}{'s' * (number != 1)}"


def describe_data(spec: str) -> dict[str, Any]:
    """Training data (``--data SPEC``): the ``data``, ``files`` and ``held-out`` lines train-tokenizer logs at
    start-up (``cli.data_report.data_summary``), read at the image size and channels it picks by default (captioned
    images: at the bundled text tokenizer's, which the text recipe tokenizes them with)."""
    from nextscale.cli.data_report import data_summary
    from nextscale.presets import get_preset
    from nextscale.training.data_specs import CAPTIONS_PREFIX, FASHION_PREFIX, data_channels

    preset = _train_tokenizer_default("preset")
    config, _ = get_preset(preset)
    side, channels = config.image_size, data_channels(spec) or config.in_channels  # as train-tokenizer picks them
    reader = f"train-tokenizer's default (preset {preset})"
    if spec.startswith(CAPTIONS_PREFIX):
        kind = "captioned images"
        # the text path tokenizes with a trained tokenizer (the README's bundled:scenes), never var-d16's 256 px RGB
        side, channels = _bundled_text_tokenizer_shape()
        reader = "as `tokenize --tokenizer bundled:scenes` reads them; another tokenizer reads at its own"
    elif spec == FASHION_PREFIX or spec.startswith(FASHION_PREFIX + ":"):
        kind = "Fashion-MNIST"
    else:
        kind = "an image folder (class sub-folders)"
    report: dict[str, Any] = {"what": f"{spec}: training data, {kind}"}
    for line in data_summary(spec, side, channels):
        key, _, value = line.partition(": ")
        report[key] = f"{report[key]}; {value}" if key in report else value
    report["read_at"] = (
        f"{side}x{side} px, {'grayscale' if channels == 1 else 'RGB'}: {reader}; "
        "--resolution changes which files are too small to use"
    )
    return report


def _bundled_text_tokenizer_shape() -> tuple[int, int]:
    """Image side and channels of bundled:scenes's tokenizer, from its config.json (no weights loaded)."""
    from nextscale.pretrained import bundled_model_path, config_from_dict, read_json_file
    from nextscale.tokenizer.config import TokenizerConfig

    folder = bundled_model_path("scenes") / "tokenizer"
    saved = read_json_file(folder / "config.json", f"the bundled scenes tokenizer is missing at {folder}")
    config = config_from_dict(TokenizerConfig, saved["config"])
    return config.image_size, config.in_channels


def _train_tokenizer_default(option: str) -> Any:
    """The default of one train-tokenizer option, read from its parser (so the two never disagree)."""
    from nextscale.cli import train_tokenizer

    parser = argparse.ArgumentParser()
    train_tokenizer.add_arguments(parser)
    return parser.get_default(option)


def _holds_class_folders(folder: Path, looked_at: int = 1000) -> bool:
    """Whether ``folder`` reads as image training data: a sub-folder (of ``folder``, or of ``folder/train``) holds
    image files, and none is a nextscale folder (a folder of runs is no data, although runs hold preview PNGs)."""
    from itertools import islice

    from nextscale.data.folders import folder_layout
    from nextscale.data.image_listing import IMAGE_EXTENSIONS

    subfolders = [sub for sub in folder_layout(folder).train_dir.iterdir() if sub.is_dir()]
    subfolders = [sub for sub in subfolders if not sub.name.startswith(".")]
    markers = ("pipeline.json", "config.json", "manifest.json", "sweep.json")
    if any((sub / name).is_file() for sub in subfolders for name in markers):
        return False
    return any(
        path.suffix.lower() in IMAGE_EXTENSIONS for sub in subfolders for path in islice(sub.rglob("*"), looked_at)
    )


def describe_sweep(folder: Path) -> dict[str, Any]:
    """A `nextscale scaling run` folder: one line per run (size, compute, progress, last held-out loss)."""
    from nextscale.scaling.sweep import collect_sweep

    runs = collect_sweep(folder)
    finished = sum(run.finished for run in runs)
    report: dict[str, Any] = {"what": f"{folder}: a scaling sweep of {len(runs)} runs ({finished} finished)"}
    for run in runs:
        last = run.evals[-1] if run.evals else None
        held_out = f"L_avg {last.loss:.4g} at step {last.step}, C = {last.compute:.3g} FLOPs" if last else "no eval yet"
        status = "finished" if run.finished else f"step {run.saved_step} of {run.total_steps}"
        report[run.run] = f"N = {_millions(run.params)}, {status}; {held_out}"
    report["next"] = f"nextscale scaling fit --sweep {folder}  (and plot, samples)"
    return report


def _only_run_lock(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but a training lock file: `train` takes the lock before it writes
    config.json, so a run stopped (Ctrl-C, a refused flag) before that leaves only the lock."""
    from nextscale.training.run_lock import LOCK_NAME

    return [child.name for child in folder.iterdir()] == [LOCK_NAME]


def describe_unstarted_run(folder: Path) -> dict[str, Any]:
    from nextscale.training.run_lock import training_process

    pid = training_process(folder)
    if pid is not None:
        return {
            "what": f"{folder}: a training run starting now (process {pid}): no config or checkpoint yet",
            "next": f"nextscale info {folder}  (again in a moment)",
        }
    return {
        "what": f"{folder}: a training run that stopped before it saved anything (only its lock file is here)",
        "next": f"re-run the `nextscale train ... --run-dir {folder}` command to start it (nothing to resume)",
    }


def describe_checkpoint(path: Path, step: int) -> dict[str, Any]:
    from nextscale.training.checkpoint import verify_checkpoint

    intact = verify_checkpoint(path)
    run = path.absolute().parent.parent  # a bare step-N.pt named from inside checkpoints/ has "." as its parent
    return {
        "what": f"{path}: a nextscale training checkpoint (step {step})",
        "run": str(run),
        "intact": "yes (checksum or zip CRCs verified)" if intact else "NO: damaged; resuming skips it",
        "next": f"nextscale info {run}",
    }


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
        "parameters": _millions(count),
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


def _duration(seconds: float) -> str:
    """3725 -> "1.0 h", 95 -> "1.6 min", 40 -> "40 s"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"
