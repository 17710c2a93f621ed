"""`nextscale info` on a `nextscale sample --out-dir` folder: images made (of how many) and their settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
