"""`scaling fit --irreducible` and `plot --irreducible`: the law with a floor has three parameters, so it needs four
sizes, and it is judged against the plain law by an F-test for nested least-squares fits, not by raw residuals.

Three parameters through three points always fit exactly: on a real 3-depth sweep the tool printed an rms log
residual of ~1e-16 "with L_inf" beside the plain law's 0.004, which read as a far better fit where it was an
interpolation (zero degrees of freedom). Found by the s18 h6 walkthrough.
"""

import json

import numpy as np
import pytest

from nextscale.cli import main
from nextscale.scaling.power_law import compare_nested_fits, fit_power_law, fit_saturating_power_law

# L_avg of the 1,200-step sweep of docs/REPRODUCTION.md (depths 1-8): the floor is real there (F(1, 3) ~ 75)
SWEEP_N = [43169, 201412, 585833, 1307024, 4202084, 9771328]
SWEEP_LOSS = [3.305391, 2.867580, 2.652, 2.525, 2.397, 2.370]


def _table(tmp_path, params, losses):
    table = tmp_path / "points.csv"
    table.write_text("params,loss\n" + "".join(f"{n},{loss}\n" for n, loss in zip(params, losses)))
    return table


def test_a_three_size_irreducible_fit_is_refused_in_one_line(tmp_path, capsys):
    # the held-out losses of a real 3-depth sweep (depths 1-3, width 32 d, 100 steps): no law was assumed
    table = _table(tmp_path, [43169, 201412, 585833], [4.421331, 4.248546, 4.196771])
    assert main(["scaling", "fit", "--csv", str(table), "--irreducible"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "needs 4 distinct x values" in error and "got 3" in error
    assert "scaling run --depths" in error  # the fix


def test_the_f_test_matches_the_f_distribution():
    x, y = np.array(SWEEP_N, dtype=float), np.array(SWEEP_LOSS)
    plain, floor = fit_power_law(x, y), fit_saturating_power_law(x, y)
    test = compare_nested_fits(x, y, plain, floor)
    rss_plain = np.sum((np.log(y) - np.log(plain(x))) ** 2)
    rss_floor = np.sum((np.log(y) - np.log(floor(x))) ** 2)
    assert test.f_statistic == pytest.approx((rss_plain - rss_floor) / (rss_floor / 3), rel=1e-9)
    assert test.degrees_of_freedom == 3 and test.f_statistic == pytest.approx(74.1, abs=0.1)
    # scipy.stats.f.sf(74.1, 1, 3) = 0.0032963745772606; here through F(1, k) = t_k^2
    assert test.p_value == pytest.approx(0.0032963745772606, rel=1e-3) and test.floor_supported
    assert test.aic_floor < test.aic_plain


def test_fit_says_whether_the_floor_is_supported(tmp_path, capsys):
    table = _table(tmp_path, SWEEP_N, SWEEP_LOSS)
    assert main(["scaling", "fit", "--csv", str(table), "--irreducible"]) == 0
    printed = capsys.readouterr().out
    assert "F(1, 3) = 74.1" in printed and "the floor is supported" in printed and "3 degrees of freedom" in printed
    # a straight law with noise: the extra parameter buys nothing, and the output says so
    x = np.geomspace(1e3, 1e7, 7)
    y = (2.0 * x) ** -0.1 * np.exp(np.random.default_rng(5).normal(0, 0.003, x.shape[0]))
    assert main(["scaling", "fit", "--csv", str(_table(tmp_path, x, y)), "--irreducible", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_points"] == 7 and result["degrees_of_freedom"] == 4
    assert result["floor_supported"] is False and result["p_value"] > 0.5


def test_the_plot_legend_gives_the_test_and_refuses_three_sizes():
    pytest.importorskip("matplotlib")
    from nextscale.scaling.plot import draw_scaling

    rows = [{"params": n, "compute": 6e6 * n, "loss": loss} for n, loss in zip(SWEEP_N, SWEEP_LOSS)]
    labels = [line.get_label() for line in draw_scaling(rows, irreducible=True).axes[0].get_lines()]
    assert any("floor supported: F(1, 3) = 74.1" in label for label in labels), labels
    three = [line for line in draw_scaling(rows[:3], irreducible=True).axes[0].get_lines()]
    dotted = [line for line in three if line.get_linestyle() == ":"]
    assert [line.get_label() for line in dotted] == ["L_avg: no law with a floor (needs 4 sizes)"]
    assert len(dotted[0].get_xdata()) == 0  # nothing drawn: no interpolating curve
