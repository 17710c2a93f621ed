"""Write the small Fashion-MNIST scenes sets the tests use (about 150 KB), so no test builds from the system data.

    python scripts/make_scene_assets.py [--data /usr/share/datasets/fashion-mnist]

Writes tests/assets/scenes/train/ (64 training scenes) and tests/assets/scenes/test/ (32 held-out scenes,
about half with an unseen pairing), seed 0, default scene settings, each in the folder format of
``nextscale.data.scenes.build_scenes``. The items come from the real Fashion-MNIST files when ``--data`` (or
the default folder) holds them, else from the tiny copy in tests/assets/fashion_mnist; scenes.json records
which (``source.sha256``). Deterministic: running it twice gives identical files.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from nextscale.data.fashion_mnist import default_root, load_fashion_mnist
from nextscale.data.scenes import build_scenes

ASSETS = Path(__file__).resolve().parents[1] / "tests" / "assets"
COUNTS = {"train": 64, "test": 32}


def pick_source(data: str | None) -> Path:
    """The real data folder if it loads, else the test copy."""
    root = Path(data) if data else default_root()
    try:
        load_fashion_mnist(root, "test")
        return root
    except (FileNotFoundError, ValueError) as err:
        fallback = ASSETS / "fashion_mnist"
        print(f"{err}\nusing the test copy in {fallback} instead")
        return fallback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data",
        default=None,
        help="Fashion-MNIST folder (default: $NEXTSCALE_FASHION_MNIST or /usr/share/datasets/fashion-mnist)",
    )
    parser.add_argument(
        "--out", type=Path, default=ASSETS / "scenes", help="output folder (default tests/assets/scenes)"
    )
    args = parser.parse_args()
    source = pick_source(args.data)
    for split, count in COUNTS.items():
        out = args.out / split
        shutil.rmtree(out, ignore_errors=True)  # a fresh build, never a resume of older settings
        build_scenes(source, out, split, count, seed=0, progress=False)
        print(f"{split}: {count} scenes from {source} -> {out}")


if __name__ == "__main__":
    main()
