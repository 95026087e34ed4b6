"""Learning curves: episode-weighted pooling, warm-up blanking, steps-to-threshold, the plot."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from car_jax.experiment import curves
from car_jax.report import Curve, json_safe, plot_curves


def _result(rate, episodes, steps):
    metrics = {"success_rate": np.asarray(rate, float), "episodes": np.asarray(episodes, float),
               "env_steps": np.tile(np.asarray(steps, float), (len(rate), 1))}  # fmt: skip
    return SimpleNamespace(metrics=metrics, seeds=tuple(range(len(rate))))


def test_curves_pool_episodes_and_blank_the_warmup():
    res = _result([[1.0, np.nan, 0.0, 0.5], [1.0, 1.0, 1.0, 1.0]], [[2, 0, 2, 4], [1, 1, 1, 1]],
                  [100, 200, 300, 400])  # fmt: skip
    (c,) = curves({"car": res}, warmup_steps=250, window=2).values()
    # Seed 0: (1*2)/2 -> blanked, (1*2+0)/2 -> blanked, (0*2)/2 = 0, (0*2 + 0.5*4)/6 = 1/3.
    np.testing.assert_allclose(c.values[0], [np.nan, np.nan, 0.0, 1 / 3])
    np.testing.assert_allclose(c.values[1], [np.nan, np.nan, 1.0, 1.0])
    np.testing.assert_allclose(c.mean[2:], [0.5, 2 / 3])
    assert c.steps_to(0.6) == 400 and np.isnan(c.steps_to(0.9))


def test_plot_and_json_safe(tmp_path):
    c = Curve([1, 2, 3], [[0.1, 0.5, 0.9], [0.2, 0.6, 1.0]])
    assert c.steps_to(0.9) == 3 and abs(c.final(2) - 0.75) < 1e-9
    png = plot_curves({"code reward": c}, tmp_path / "curve.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json_safe({"a": [float("nan"), 1.0], "b": (2.0,)}) == {"a": [None, 1.0], "b": [2.0]}
