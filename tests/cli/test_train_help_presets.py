"""`train --help` lists the presets without importing torch: its list must be nextscale.presets' own."""

from nextscale.cli import main
from nextscale.cli.train import TRANSFORMER_PRESETS
from nextscale.presets import PRESETS


def test_the_help_lists_every_preset_and_no_other():
    assert list(TRANSFORMER_PRESETS) == list(PRESETS)


def test_train_help_names_presets_captions_and_bundled_tokenizers(capsys):
    try:
        main(["train", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "star-tiny" in shown and "var-d36" in shown
    assert "captions:PATH" in shown and "bundled:scenes" in shown
