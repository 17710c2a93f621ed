"""Which run-config changes refuse a resume: path spellings of one place do not, a changed class list does."""

import pytest

from nextscale.training.config import config_differences, same_place


@pytest.fixture
def work(tmp_path, monkeypatch):
    (tmp_path / "tok").mkdir()
    (tmp_path / "tokens").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_relative_absolute_and_trailing_slash_spellings_of_one_folder_resume(work):
    saved = {"tokenizer_source": "tok", "tokens": "tokens", "data": "captions:tokens", "train": {"lr": 1e-3}}
    current = {
        "tokenizer_source": str(work / "tok"),
        "tokens": "./tokens/",
        "data": f"captions:{work / 'tokens'}",
        "train": {"lr": 1e-3},
    }
    assert config_differences(saved, current) == []


def test_another_folder_or_kind_or_a_dataset_name_is_still_a_difference(work):
    assert config_differences({"tokens": "tokens"}, {"tokens": "tok"}) == ["tokens: 'tokens' in the run, 'tok' now"]
    assert not same_place("captions:tokens", "tokens")  # another kind of source
    assert not same_place("fashion-mnist", "./fashion-mnist")  # nothing on disk: only equal as strings
    assert config_differences({"lr": "tok"}, {"lr": str(work / "tok")})  # only path fields compare by place


def test_a_changed_class_list_refuses_but_a_missing_one_does_not():
    names = ["cat", "dog"]
    assert config_differences({"class_names": names}, {"class_names": ["dog", "cat"]}) == [
        "class_names: ['cat', 'dog'] in the run, ['dog', 'cat'] now"
    ]
    assert config_differences({}, {"class_names": names}) == []  # an older run recorded none
    assert config_differences({"class_names": names}, {"class_names": None}) == []
    assert config_differences({"class_names": names}, {"class_names": names}) == []
