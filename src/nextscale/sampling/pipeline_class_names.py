"""A class pipeline's class names: checking the names a folder records, and turning names or ids into ids.

``class_names[i]`` names class ``i`` (pipeline.json "class_names"); a label may be an id or a name, and names
match ignoring case, spaces, '-' and '_' ("ankle_boot" finds "Ankle boot"). ``ClassNamesMixin`` gives
``Pipeline`` these methods.
"""

from __future__ import annotations

import difflib
import numbers
import unicodedata
from collections.abc import Mapping, Sequence

import numpy as np
import torch


def normalise_name(name: str) -> str:
    """Class names match ignoring case, the difference between spaces, '-' and '_' ("ankle_boot"), and how the
    characters are spelled in Unicode: folders copied from a Mac spell "é" as "e" + a combining accent (NFD), which
    looks the same as the typed "é" (NFKC folds both into one form)."""
    return spelled_name(unicodedata.normalize("NFKC", name).casefold())


def spelled_name(name: str) -> str:
    """A class name as the user spelled it, only case and '-' / '_' / spaces set aside: two names this tells apart are
    two classes, even where Unicode folding (``normalise_name``) would make them one ("Straße" and "Strasse", or a
    folder's NFC and NFD copies), as models trained before that folding may hold."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def close_names(name: str, names: Sequence[str], most: int = 2) -> list[str]:
    """The class names ``name`` is likely a typo of, best first ("cat" -> "cats"), compared as names match
    (``normalise_name``) and also without spaces ("redapples" -> "red apples"); each part of a name with "/" and each
    word counts too ("tshirt" -> "T-shirt/top", "boots" -> "Ankle boot")."""
    spellings: dict[str, str] = {}  # a spelling -> the name it stands for; whole names first, so "shirt" is "Shirt"
    whole = [(known, known) for known in names]
    parts = [(part, known) for known in names for part in (*known.split("/"), *known.replace("/", " ").split())]
    for form, known in whole + parts:
        folded = normalise_name(form)
        spellings.setdefault(folded, known)
        spellings.setdefault(folded.replace(" ", ""), known)
    found: list[str] = []
    for wanted in (normalise_name(name), normalise_name(name).replace(" ", "")):
        for match in difflib.get_close_matches(wanted, list(spellings), n=len(spellings), cutoff=0.75):
            if spellings[match] not in found:
                found.append(spellings[match])
    return found[:most]


def is_integer_scalar_array(value: object) -> bool:
    """A 0-d integer tensor or array (``torch.tensor(3)``, ``np.array(3)``), which stands for one class id."""
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu"


# How a pipeline call asks for unconditional samples (the null id num_classes is internal: an id given by a user must
# name a class, so that an off-by-one id such as 10 of a 10-class model is not silently unconditional).
CALL_UNCONDITIONAL = (
    "for unconditional samples put None in the list, e.g. pipe(class_labels=[3, None]) "
    "(class_labels=None draws random labels)"
)


def wrong_label_fix(label: object) -> str:
    """What to do about a label that is neither an id nor a name (the end of ``class_ids``' error)."""
    if isinstance(label, numbers.Real) and not isinstance(label, bool) and float(label).is_integer():
        return f"pass int({label!r}) = {int(label)}"  # a label read from a float array or a JSON number
    if label is None:
        return "None is no class id (in pipe(class_labels=[3, None]) it asks for an unconditional row)"
    return "e.g. 3 or 'Sneaker' (see pipe.class_names)"


class ClassNamesMixin:
    """``check_class_names``, ``class_ids``, ``class_id_of_name`` and ``describe_classes`` of ``Pipeline``
    (which provides ``class_names`` and ``num_classes``)."""

    def check_class_names(self, class_names: Sequence[str] | None) -> tuple[str, ...] | None:
        """One distinct, non-empty name per class id (``class_names[i]`` is class ``i``), or None."""
        if class_names is None:
            return None
        if isinstance(class_names, (str, bytes, set, frozenset, Mapping)):  # a string would give one name per letter
            raise TypeError(
                f"class_names must be a list of names in class-id order, got a {type(class_names).__name__}; e.g. "
                "class_names=['cat', 'dog'] (a file of names: open(path).read().splitlines())"
            )
        names = tuple(class_names)
        if not all(isinstance(name, str) and name.strip() for name in names):
            raise TypeError(f"class_names must be non-empty strings, got {list(names)[:5]}")
        if len(names) != self.num_classes:
            raise ValueError(f"got {len(names)} class names for a model with {self.num_classes} classes")
        # Distinct as spelled: names that only Unicode folding makes alike still load (see class_id_of_name).
        if len({spelled_name(name) for name in names}) != len(names):
            raise ValueError(f"class names must be distinct (ignoring case), got {list(names)}")
        return names

    def class_ids(self, labels: Sequence[int | str] | int | str, unconditional: str = "") -> list[int]:
        """Class ids or names (``"Sneaker"``, case-insensitive; a name with "/" also answers to each part, so
        ``"t-shirt"`` finds ``"T-shirt/top"``) -> ids in [0, num_classes); a clear error for anything else.

        ``unconditional``: how the caller asks for unconditional samples, added to the error for an id out of range
        (the null id num_classes and negative ids included).
        """
        labels = [labels] if isinstance(labels, (int, str)) else list(labels)
        ids = []
        for label in labels:
            if is_integer_scalar_array(label):
                label = label.item()  # list(torch.tensor([1, 2])) holds 0-d tensors
            if isinstance(label, str) and label.strip().lstrip("-").isdigit():
                label = int(label)
            if isinstance(label, str):
                ids.append(self.class_id_of_name(label))
            elif isinstance(label, numbers.Integral) and not isinstance(label, bool):
                if not 0 <= int(label) < self.num_classes:
                    raise self.class_out_of_range(int(label), unconditional)
                ids.append(int(label))
            else:
                raise TypeError(
                    f"a class label is an int id or a class name, got {label!r} ({type(label).__name__}); "
                    + wrong_label_fix(label)
                )
        return ids

    def class_out_of_range(self, label: int, unconditional: str = "") -> ValueError:
        """The error for an id outside [0, num_classes): the valid ids (and names), and ``unconditional``."""
        names = f" ({self.describe_classes()})" if self.class_names else ""
        null = " (it is the internal null class)" if label == self.num_classes else ""
        fix = f"; {unconditional}" if unconditional else ""
        return ValueError(
            f"class {label} is out of range{null}: this model has classes 0..{self.num_classes - 1}{names}{fix}"
        )

    def class_id_of_name(self, name: str) -> int:
        """A whole name wins over a part of another ("cat" is class "cat", not "dog/cat"); a part that several
        names share is refused rather than read as the first of them."""
        wanted = normalise_name(name)
        names = self.class_names or ()
        spelled = [index for index, known in enumerate(names) if spelled_name(name) == spelled_name(known)]
        if spelled:  # distinct (check_class_names): the name as spelled wins over names that only fold alike
            return spelled[0]
        folded = [index for index, known in enumerate(names) if wanted == normalise_name(known)]
        if len(folded) > 1:  # "é" typed, folders "é" and "e" + accent: Unicode cannot tell which is meant
            raise ValueError(
                f"class {name!r} matches several names that differ only in how Unicode spells them "
                f"({', '.join(f'{i} {names[i]!r}' for i in folded)}); give the id"
            )
        if folded:
            return folded[0]
        by_part = [index for index, known in enumerate(names) if wanted in map(normalise_name, known.split("/"))]
        if len(by_part) > 1:
            raise ValueError(
                f"class {name!r} is part of several names ({', '.join(f'{i} {names[i]}' for i in by_part)}); "
                "give the whole name or the id"
            )
        if by_part:
            return by_part[0]
        if not self.class_names:
            raise ValueError(
                f"class {name!r}: this model records no class names; give an id in 0..{self.num_classes - 1}"
            )
        guess = close_names(name, names)
        hint = f"; did you mean {' or '.join(map(repr, guess))}?" if guess else ""
        raise ValueError(f"unknown class name {name!r}; valid names: {self.describe_classes()}{hint}")

    def name_of_words(self, labels: Sequence[int | str]) -> str | None:
        """The class name that the first two or more labels form when joined by spaces, or None: a shell splits
        ``--class red apples`` typed without quotes into the labels "red" and "apples" (of the name "red apples")."""
        known = {normalise_name(name) for name in self.class_names or ()}
        words: list[str] = []
        for label in labels:
            if not isinstance(label, str):
                return None
            words.append(label)
            if len(words) > 1 and normalise_name(" ".join(words)) in known:
                return " ".join(words)
        return None

    def describe_classes(self) -> str:
        """ "0 T-shirt/top, 1 Trouser, ..." (or "0..C-1" without names)."""
        if not self.class_names:
            return f"0..{self.num_classes - 1}"
        return ", ".join(f"{index} {name}" for index, name in enumerate(self.class_names))
