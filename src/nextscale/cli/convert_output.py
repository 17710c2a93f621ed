"""Where `nextscale convert` writes: checking --out before anything is loaded, and replacing a folder's pipeline
so that no component of an earlier pipeline survives beside the new one.

The new pipeline is written into a staging folder, then moved in. A new --out is the staging folder beside it,
moved in one rename. Into an existing --out (empty, or with --overwrite), the staging folder is made inside it
(renames never cross file systems or mount points: --out may be a mounted volume), the old pipeline entries
(pipeline.json first, so a crash in between leaves no loadable mix) are moved aside, the new ones moved in
(pipeline.json last), and the old ones deleted (a swap stopped halfway puts them back:
``nextscale.pretrained.swap_entries``); files that are not part of a pipeline stay. Staging folders that a killed
convert or export left in or beside --out are removed by the next one into it (one logged line), and do not count
as files in --out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from nextscale.pretrained import REPLACED_STAGING, remove_stale_staging, staging_folder, stale_staging, swap_entries

# What a pipeline folder consists of (pipeline.json first: without it the folder is not loadable).
PIPELINE_ENTRIES = ("pipeline.json", "tokenizer", "transformer", "text_encoder")


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, lies under a file, or is a non-empty folder without --overwrite (staging
    folders left by killed writes do not count)."""
    for parent in [out, *out.parents]:
        if parent.exists() and not parent.is_dir():
            where = "is a file" if parent == out else f"lies under {parent}, which is a file"
            raise NotADirectoryError(
                f"--out {out} {where}; --out is the folder to write the pipeline into: give a new folder name"
            )
        if parent.exists():
            break
    folder = out.resolve() if out.is_symlink() else out  # the staging folders are named after the linked folder
    leftovers = set(stale_staging(folder, staging_patterns(folder, folder)))  # removed when the pipeline is written
    if out.is_dir() and any(entry not in leftovers for entry in folder.iterdir()) and not overwrite:
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
    remove_stale_staging(home, staging_patterns(out, home))
    with staging_folder(home, f".{out.name}.*.converting") as staging:
        save(staging)
        if home != out:
            os.chmod(staging, 0o755)  # mkdtemp creates 0700; the folder is meant to be shared
            os.replace(staging, out)
            return
        swap_entries(staging, out, PIPELINE_ENTRIES)


def staging_patterns(out: Path, home: Path) -> list[str]:
    """The staging folders that writes into ``out`` make in ``home`` (``out`` itself, or the folder above it)."""
    return [f".{out.name}.*.converting", *([REPLACED_STAGING] if home == out else [])]
