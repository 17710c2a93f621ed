"""The F-test of a floor on points that lie exactly on a law: rounding-level residuals are no evidence."""

import numpy as np

from nextscale.scaling.power_law import compare_nested_fits, fit_power_law, fit_saturating_power_law

SIZES = np.array([1e6, 2e6, 4e6, 8e6, 1.6e7])


def compare(losses):
    return compare_nested_fits(SIZES, losses, fit_power_law(SIZES, losses), fit_saturating_power_law(SIZES, losses))


def test_an_exact_plain_law_does_not_support_a_floor():
    test = compare(3.0 * SIZES**-0.1)  # residuals ~1e-15: their ratio made F 28.9, p 0.033, "supported"
    assert not test.floor_supported
    assert test.p_value == 1.0 and test.aic_plain < test.aic_floor


def test_an_exact_floored_law_still_supports_its_floor():
    test = compare(0.5 + 3.0 * SIZES**-0.1)
    assert test.floor_supported and test.aic_floor < test.aic_plain
