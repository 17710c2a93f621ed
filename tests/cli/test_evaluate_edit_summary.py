"""The terminal summary of `evaluate --edit` for a text model shows the baselines the README promises ("scored like
samples beside the inputs and their reconstructions"): the report's edit_baselines as an inputs row and a
reconstructions row, with the distances and the adherence judged by the inputs' own captions."""

from nextscale.cli.evaluate_text_edit import format_edit_baselines


def adherence(item: float, empty: float, scene: float) -> dict:
    overall = {"item_accuracy": item, "empty_accuracy": empty, "scene_accuracy": scene}
    return {"overall": overall, "seen": overall, "unseen": {"item_accuracy": None}}


def test_both_baseline_rows_carry_the_distances_and_the_adherence():
    baselines = {
        "inputs": {"fid": -0.0002, "kid": 0.0, "kid_std": 0.0, "precision": 1.0, "recall": 1.0},
        "reconstructions": {"fid": 1.234, "kid": 0.0123, "kid_std": 0.0021, "precision": 0.9, "recall": 0.91},
    }
    baselines["inputs"]["adherence"] = adherence(0.95, 0.99, 0.875)
    baselines["reconstructions"]["adherence"] = adherence(0.9, 0.98, 0.8)
    lines = format_edit_baselines(baselines).splitlines()
    assert lines[0].startswith("baselines, an edit that changed nothing")
    assert lines[1].split() == ["FID", "KID", "±", "std", "precision", "recall", "item", "empty", "scene"]
    assert lines[2].split() == ["inputs", "0.00", "0", "±", "0", "1.000", "1.000", "0.950", "0.990", "0.875"]
    assert lines[3].split() == ["recon", "1.23", "0.0123", "±", "0.0021", "0.900", "0.910", "0.900", "0.980", "0.800"]
    assert len(lines) == 4


def test_without_a_reference_distance_or_a_judge_the_cells_say_so():
    only_judged = {"inputs": {"adherence": adherence(1.0, 1.0, 1.0)}, "reconstructions": {}}
    lines = format_edit_baselines(only_judged).splitlines()
    assert lines[2].split() == ["inputs", "-", "-", "-", "-", "1.000", "1.000", "1.000"]
    assert lines[3].split() == ["recon", *["-"] * 7]
    unjudged = {"inputs": {"fid": 2.0, "kid": 0.1, "kid_std": 0.01, "precision": 0.5, "recall": 0.5}}
    assert format_edit_baselines(unjudged).splitlines()[-1].startswith("(item / empty / scene: not judged")
