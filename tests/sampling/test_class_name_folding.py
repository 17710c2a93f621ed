"""Class names that only Unicode folding makes alike: a model holding both still loads, and each is found."""

import unicodedata

import pytest

from nextscale.sampling.pipeline_class_names import ClassNamesMixin

NFC = unicodedata.normalize("NFC", "café")
NFD = unicodedata.normalize("NFD", "café")
FULL_WIDTH = "\uff43\uff41\uff46é"  # "ｃａｆé": NFKC folds it into "café" too


class TwoClasses(ClassNamesMixin):
    num_classes = 2

    def __init__(self, names):
        self.class_names = self.check_class_names(names)


def test_names_that_fold_alike_still_load_and_each_is_found_as_spelled():
    # Before the NFKC folding these loaded; with it, Pipeline refused the run's own class folders.
    pipe = TwoClasses(["Straße", "Strasse"])
    assert pipe.class_ids(["straße", "STRASSE"]) == [0, 1]
    pipe = TwoClasses([NFC, NFD])
    assert pipe.class_ids([NFD, NFC]) == [1, 0]
    with pytest.raises(ValueError, match="distinct"):
        TwoClasses(["Cat", "cat"])  # the same as spelled: refused, as before


def test_a_folded_name_that_matches_several_is_refused_naming_the_ids():
    assert TwoClasses([NFD, "tea"]).class_ids([NFC]) == [0]  # one folded match: found, as the folding meant
    pipe = TwoClasses([NFD, FULL_WIDTH])
    with pytest.raises(ValueError, match="several names.*give the id"):
        pipe.class_ids([NFC])
