"""What a path holds, for `nextscale info PATH`: which kind of path it is (a pipeline, training run, token folder,
sample folder, sweep, component folder, training data or official checkpoint), handed to the module that describes
that kind (info_pipeline, info_runs, info_data, info_samples, info_official)."""

from __future__ import annotations

from typing import Any

from nextscale.cli.info_data import describe_data, describe_tokens, holds_class_folders
from nextscale.cli.info_official import describe_official_file
from nextscale.cli.info_pipeline import component_facts, describe_pipeline
from nextscale.cli.info_runs import (
    describe_checkpoint,
    describe_run,
    describe_sweep,
    describe_unstarted_run,
    only_run_lock,
)
from nextscale.cli.info_samples import describe_samples

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
        if holds_class_folders(path):
            return describe_data(text)
        if only_run_lock(path):
            return describe_unstarted_run(path)
        from nextscale.data.image_listing import IMAGE_EXTENSIONS
        from nextscale.training.caption_prefix_checks import captioned_data_in

        captioned = captioned_data_in(path) is not None  # a manifest, shards or .txt captions: read as captions:
        loose = sum(child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS for child in path.iterdir())
        if loose and not captioned:  # a folder of pictures without classes: what train-tokenizer would refuse
            raise ValueError(
                f"{path} holds {loose} {'image' if loose == 1 else 'images'} but no class sub-folders: training "
                f"reads {text}/CLASS_NAME/*.png, one sub-folder per class; move them into sub-folders (pictures "
                f"without classes all into one, e.g. {text}/all/), or give them .txt captions for a text model"
            )
        raise ValueError(
            f"{path} is not a nextscale folder: a pipeline holds pipeline.json, a training run config.json with "
            "its kind, a token folder manifest.json, a scaling sweep sweep.json, a `sample --out-dir` folder "
            "sample-settings.json, image data class sub-folders"
            + (f"; for its captioned images: `nextscale info captions:{text}`" if captioned else "")
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
