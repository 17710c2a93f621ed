"""Translating official checkpoint key names into ours and back, by an explicit table.

Each row pairs an official name with ours; ``{i}`` stands for a block index. The table must be a
bijection on the released key lists (tests check it), so a key either translates or is refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def _pattern(template: str) -> re.Pattern:
    return re.compile(re.escape(template).replace(r"\{i\}", r"(\d+)"))


class KeyTable:
    """Official <-> nextscale parameter names.

    Args:
        rows: (official name, our name) pairs.
        model: the model family, for error messages ("VAR", "STAR").
    """

    def __init__(self, rows: Sequence[tuple[str, str]], model: str) -> None:
        self.model = model
        self._to_ours = [(_pattern(official), ours) for official, ours in rows]
        self._to_official = [(_pattern(ours), official) for official, ours in rows]

    def _translate(self, key: str, table: list[tuple[re.Pattern, str]], source: str) -> str:
        for pattern, target in table:
            match = pattern.fullmatch(key)
            if match:
                return target.replace("{i}", match.group(1)) if match.groups() else target
        raise ValueError(f"unknown {source} key {key!r}; not a {self.model} transformer parameter")

    def to_ours(self, key: str) -> str:
        return self._translate(key, self._to_ours, f"official {self.model}")

    def to_official(self, key: str) -> str:
        return self._translate(key, self._to_official, "nextscale")
