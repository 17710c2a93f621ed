"""The held-out watch warns once when the held-out loss rises well above its lowest (memorising)."""

from nextscale.training.held_out_watch import HeldOutWatch


def test_warns_once_when_the_held_out_loss_rises_above_its_lowest():
    watch = HeldOutWatch(rise=0.1)
    assert [watch.update(step, loss) for step, loss in ((100, 6.0), (200, 4.8), (300, 5.2))] == [None] * 3
    warning = watch.update(400, 11.1)  # 131 % above 4.8
    assert warning.startswith("held-out loss 11.100 at step 400 is 131 % above its lowest, 4.800 at step 200")
    assert "memorising" in warning
    assert watch.update(500, 12.0) is None  # said once


def test_a_falling_or_noisy_loss_and_non_finite_values_stay_quiet():
    watch = HeldOutWatch(rise=0.1)
    for step, loss in enumerate((5.0, 4.0, 4.3, 3.9, 4.2, float("nan"), float("inf"), 3.5)):
        assert watch.update(step, loss) is None
    assert watch.lowest == (7, 3.5)
