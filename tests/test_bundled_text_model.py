"""The bundled text-to-image scene model follows prompts: named items land in their quadrant, others stay empty."""

from pathlib import Path

import pytest

import nextscale
from nextscale.evaluation.adherence import evaluation_prompts, sweep_cfg
from nextscale.sampling.pipeline import Pipeline

BUNDLED_SCENES = Path(nextscale.__file__).parent / "assets" / "scenes"


@pytest.fixture(scope="module")
def pipe():
    return Pipeline.from_pretrained(BUNDLED_SCENES)


def test_bundled_scene_model_records_its_recommended_sampling(pipe):
    assert type(pipe).__name__ == "TextPipeline"
    assert pipe.recommended_sampling == {"cfg": 3.0, "top_k": 10}


def test_bundled_scene_model_puts_named_items_in_their_quadrants(pipe):
    # The model card measures 96.5 % of items and 99.1 % of empty quadrants on 200 held-out prompts; 24 prompts
    # (about 42 items, 54 empty quadrants) at >= 85 % / >= 93 % leave room for platform noise, while the CPU
    # run that missed the target (59 % / 86 %) fails both bounds.
    prompts = evaluation_prompts(24, max_items=2)
    (result,) = sweep_cfg(pipe, prompts, [3.0], top_k=10, seed=0, progress=False)
    scores = result.adherence.overall
    assert scores.item_accuracy >= 0.85, scores
    assert scores.empty_accuracy >= 0.93, scores
    assert result.adherence.unseen.items > 0  # held-out pairings are among the prompts
