"""`nextscale serve --help` describes what the edit tabs show: the pasted-back results too."""

from nextscale.cli import serve


def test_serve_help_names_the_edit_tabs_pasted_back_results():
    edit_tab = serve.__doc__.split("  Edit ")[1].split("Edit with text")[0]
    assert "pasted back" in edit_tab and "--paste-back" in edit_tab
