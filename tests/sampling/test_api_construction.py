"""Building a pipeline by hand in a notebook: the wrong component, swapped arguments or class names that are not a
list are refused in one line that says what to give, not deep inside the first call."""

import pytest
import torch
from tiny_pipelines import tiny_class_pipeline

from nextscale import Pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


def test_swapped_components_are_named_as_swapped(pipe):
    with pytest.raises(TypeError, match=r"takes \(tokenizer, transformer\): the two are swapped"):
        Pipeline(pipe.transformer, pipe.tokenizer)


def test_a_tokenizer_of_another_kind_is_refused_in_one_line(pipe):
    with pytest.raises(TypeError, match="tokenizer must be a MultiScaleVQVAE, got Linear"):
        Pipeline(torch.nn.Linear(2, 2), pipe.transformer)


@pytest.mark.parametrize("names", ["abcdefghij", set("abcdefghij"), dict.fromkeys("abcdefghij")], ids=type)
def test_class_names_must_be_a_list_in_id_order(pipe, names):
    with pytest.raises(TypeError, match="class_names must be a list of names in class-id order"):
        Pipeline(pipe.tokenizer, pipe.transformer, class_names=names)
    listed = Pipeline(pipe.tokenizer, pipe.transformer, class_names=list("abcdefghij"))
    assert listed.class_ids(["c"]) == [2]
