"""Where `nextscale convert` writes: checking --out before anything is loaded, and replacing a folder's pipeline
so that no component of an earlier pipeline survives beside the new one.

The new pipeline is written into a staging folder, then moved in. A new --out is the staging folder beside it,
moved in one rename. Into an existing --out (empty, or with --overwrite), the staging folder is made inside it
(renames never cross file systems or mount points: --out may be a mounted volume), the old pipeline entries
(pipeline.json first, so a crash in between leaves no loadable mix) are moved aside, the new ones moved in
(pipeline.json last), and the old ones deleted (a swap stopped halfway puts them back:
``nextscale.pretrained.swap_entries``); files that are not part of a pipeline stay.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from nextscale.pretrained import swap_entries

# What a pipeline folder consists of (pipeline.json first: without it the folder is not loadable).
PIPELINE_ENTRIES = ("pipeline.json", "tokenizer", "transformer", "text_encoder")


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, lies under a file, or is a non-empty folder without --overwrite."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"lies under {parent}, which is a file"
            raise NotADirectoryError(
                f"--out {out} {where}; --out is the folder to write the pipeline into: give a new folder name"
            )
        if parent.exists():
            break
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        holds = "a pipeline" if (out / PIPELINE_ENTRIES[0]).is_file() else "files"
        raise FileExistsError(
            f"--out {out} already holds {holds}; give a new or empty folder, or pass --overwrite to replace the "
            "pipeline in it"
        )


def write_pipeline(out: Path, save: Callable[[Path], None]) -> None:
    """Call ``save(folder)`` on a staging folder beside ``out``, then put its contents in ``out``."""
    # A symbolic link to a folder: stage beside the folder itself (the link's folder may be on another file system,
    # and a rename cannot replace a link by a folder); the link stays and names the new pipeline.
    out = out.resolve() if out.is_symlink() else out
    out.parent.mkdir(parents=True, exist_ok=True)
    # An existing --out may be a mount point (a container volume): a rename from beside it would cross into
    # another file system (EXDEV) or replace a mount point (EBUSY), so stage inside it.
    home = out if out.is_dir() else out.parent
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".converting", dir=home))
    try:
        save(staging)
        if home != out:
            os.chmod(staging, 0o755)  # mkdtemp creates 0700; the folder is meant to be shared
            os.replace(staging, out)
            return
        swap_entries(staging, out, PIPELINE_ENTRIES)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
