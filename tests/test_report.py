"""Learning curves from evaluations: only evaluated updates, IQM with a CI, sustained thresholds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from car_jax.experiment import curves, summarize
from car_jax.report import Curve, json_safe, plot_curves, run_report

NAN = np.nan


def _result(greedy, steps):
    greedy = np.asarray(greedy, float)
    metrics = {
        "eval_greedy_success": greedy,
        "env_steps": np.tile(np.asarray(steps, float), (len(greedy), 1)),
        "train_success_rate": np.full(greedy.shape, 0.5),
    }
    return SimpleNamespace(metrics=metrics, seeds=tuple(range(len(greedy))),
                           compile_seconds=1.0, train_seconds=2.0)  # fmt: skip


def test_curves_keep_the_evaluations_and_thresholds_hold_per_seed():
    # Evaluations at updates 2 and 4 (NaN in between); seed 0 dips after reaching 90%.
    res = _result([[NAN, 0.95, NAN, 0.5, NAN, 0.9], [NAN, 0.2, NAN, 0.92, NAN, 1.0],
                   [NAN, 0.0, NAN, 0.1, NAN, 0.2]], [100, 200, 300, 400, 500, 600])  # fmt: skip
    (c,) = curves({"car": res}).values()
    np.testing.assert_array_equal(c.steps, [200, 400, 600])
    np.testing.assert_array_equal(c.seed_steps_to(0.9), [600, 400, NAN])
    assert c.steps_to(0.9) == 600  # median of (400, 600, never)
    np.testing.assert_allclose(c.final_per_seed(), [0.9, 1.0, 0.2])
    s = summarize({"car": res}, ["a"])["car"]
    assert s["seeds_reaching_90pct"] == 2 and s["steps_to_90pct"] == 600
    assert s["train_episodes_final_success"] == 0.5
    low, high = s["final_success_ci95"]
    assert 0.2 <= low <= s["final_success"] <= high <= 1.0
    assert "final_eval_greedy_return" not in s  # only what was logged is summarised
    res.metrics["eval_greedy_return"] = np.where(np.isnan(res.metrics["eval_greedy_success"]),
                                                 NAN, [[0, 1, 2, 3, 4, 5.0]] * 3) + [[0], [10], [20]]  # fmt: skip
    s = summarize({"car": res}, ["a"])["car"]
    assert s["final_eval_greedy_return_per_seed"] == [5.0, 15.0, 25.0]
    assert s["final_eval_greedy_return"] == 15.0  # IQM of three: the middle one


def test_median_needs_half_the_seeds():
    c = Curve([1, 2], [[0.95, 0.95], [0.1, 0.1], [0.0, 0.0]])
    assert np.isnan(c.steps_to(0.9))  # one seed of three got there


def test_plot_report_and_json_safe(tmp_path):
    c = Curve([1, 2, 3], [[0.1, 0.5, 0.9], [0.2, 0.6, 1.0], [0.0, 0.7, 0.95]])
    low, high = c.interval(reps=200)
    assert np.all(low <= c.iqm) and np.all(c.iqm <= high) and np.any(low < high)
    png = plot_curves({"code reward": c}, tmp_path / "curve.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = run_report("T", "state", "src", "verdict", {"code reward": c}, "how", "note")
    assert "| code reward | 3 | 95% [" in report and "| 90% 100% 95% |" in report
    assert "3 (3/3)" in report
    assert json_safe({"a": [float("nan"), 1.0], "b": (2.0,)}) == {"a": [None, 1.0], "b": [2.0]}


def test_plot_curves_of_draws_success_or_the_env_return(tmp_path, monkeypatch):
    import car_jax.report as report
    from car_jax.errors import UserError
    from car_jax.experiment import plot_curves_of

    res = _result([[NAN, 0.0, NAN, 0.0], [NAN, 0.0, NAN, 0.0]], [100, 200, 300, 400])
    res.metrics["eval_greedy_return"] = np.asarray([[NAN, 3.0, NAN, 7.0], [NAN, 4.0, NAN, 20.0]])
    drawn = {}

    def spy(curves_, path, title, ylabel):
        drawn[ylabel] = {
            k: (c.steps.tolist(), c.final_per_seed().tolist()) for k, c in curves_.items()
        }
        return plot_curves(curves_, path, title, ylabel)

    monkeypatch.setattr(report, "plot_curves", spy)
    png = plot_curves_of({"car": res}, tmp_path / "r.png", "t", "return")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The return, only at the evaluations; no stochastic curve since none was logged.
    assert drawn["eval return (greedy solid, stochastic dashed)"] == {
        "code reward (CaR)": ([200.0, 400.0], [7.0, 20.0])
    }
    plot_curves_of({"car": res}, tmp_path / "s.png", "t")
    assert drawn["eval success (greedy solid, stochastic dashed)"]["code reward (CaR)"][1] == [0, 0]
    with pytest.raises(UserError, match="not 'length'"):
        plot_curves_of({"car": res}, tmp_path / "x.png", "t", "length")
