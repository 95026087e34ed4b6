"""Aggregates across seeds: IQM, stratified-bootstrap intervals, sustained steps-to-threshold."""

import numpy as np
import pytest

from car_jax.stats import bootstrap_ci, iqm, steps_to_sustained


def test_iqm_trims_a_quarter_from_each_end():
    assert iqm([1, 2, 3, 4, 5, 100]) == pytest.approx(3.5)  # floor(6/4)=1 cut: mean(2, 3, 4, 5)
    assert iqm([5, 1, 3, 2, 4]) == pytest.approx(3.0)  # cut 1 each end: mean(2, 3, 4)
    assert iqm([0.2, 0.9, 0.4]) == pytest.approx(0.5)  # n=3: nothing cut
    np.testing.assert_allclose(iqm(np.array([[1, 2, 3, 10], [4, 4, 4, 40]]), axis=1), [2.5, 4.0])


def test_bootstrap_interval_by_hand():
    # Two seeds, scores 0 and 1: a resample holds two draws, so its mean is 0, 0.5 or 1 with
    # probabilities 1/4, 1/2, 1/4; the 2.5% and 97.5% quantiles are then 0 and 1.
    assert bootstrap_ci([0.0, 1.0], np.mean, reps=4000) == (0.0, 1.0)
    assert bootstrap_ci([0.7] * 5) == pytest.approx((0.7, 0.7))  # no spread, no interval
    low, high = bootstrap_ci([0.1, 0.5, 0.6, 0.8, 0.9], reps=500, seed=3)
    assert low < iqm([0.1, 0.5, 0.6, 0.8, 0.9]) < high
    assert bootstrap_ci([0.1, 0.5, 0.6, 0.8, 0.9], reps=500, seed=3) == (low, high)


def test_bootstrap_is_stratified_by_task():
    # Task A always scores 0, task B always 1: every stratified resample keeps two runs of each,
    # so the mean is exactly 0.5 (an unstratified bootstrap would spread from 0 to 1).
    scores = np.array([[0.0, 1.0], [0.0, 1.0]])
    assert bootstrap_ci(scores, np.mean, reps=300) == (0.5, 0.5)


def test_steps_to_sustained_needs_the_rest_of_the_run():
    steps = [10, 20, 30, 40, 50]
    assert steps_to_sustained(steps, [0.2, 0.95, 0.5, 0.92, 0.97], 0.9) == 40  # not the blip at 20
    assert steps_to_sustained(steps, [0.95, 0.95, 0.9, 0.91, 1.0], 0.9) == 10
    assert np.isnan(steps_to_sustained(steps, [0.2, 0.95, 0.95, 0.95, 0.5], 0.9))
    assert steps_to_sustained(steps, [0.95, np.nan, 0.95, 0.95, 0.95], 0.9) == 30  # NaN: below
