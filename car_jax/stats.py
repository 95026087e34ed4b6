"""Aggregates across seeds as the field reports them (Agarwal et al., 2021, "rliable").

- `iqm`: the interquartile mean, the mean of the middle 50% of the scores (25% trimmed from
  each end, as `scipy.stats.trim_mean(x, 0.25)`).
- `bootstrap_ci`: a percentile confidence interval from a stratified bootstrap: the runs of each
  task are resampled with replacement within that task, the statistic recomputed on every
  resample, and the interval read off the resampled statistics' quantiles.
- `steps_to_sustained`: the first evaluation from which a seed's score stays at or above a
  threshold for the rest of the run.

Written in numpy: `rliable` itself pulls in arch, scipy and seaborn for these few lines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def iqm(scores: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Interquartile mean along `axis` (all values when None): drop floor(n/4) from each end."""
    x = np.asarray(scores, np.float64)
    if axis is None:
        x, axis = x.reshape(-1), 0
    x = np.sort(np.moveaxis(x, axis, -1), axis=-1)
    n = x.shape[-1]
    if n == 0:
        return np.full(x.shape[:-1], np.nan)
    cut = int(0.25 * n)
    return x[..., cut : n - cut].mean(axis=-1)


def bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float] = iqm,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Stratified-bootstrap percentile interval of `statistic(scores)`.

    Args:
      scores: [runs] for one task, or [runs, tasks] (runs resampled within each task column).
      statistic: maps a resampled [runs, tasks] (or [runs]) array to one number.
      reps: bootstrap resamples.
      confidence: the interval's coverage (0.95: the 2.5% and 97.5% quantiles).
      seed: seed of the resampling (the interval is deterministic for a seed).
    """
    x = np.asarray(scores, np.float64)
    flat = x.ndim == 1
    x = x[:, None] if flat else x
    runs, tasks = x.shape
    if runs == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    # [reps, runs, tasks]: for each task its own draw of run indices.
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    resampled = np.take_along_axis(np.broadcast_to(x, (reps, runs, tasks)), idx, axis=1)
    stats = np.asarray([statistic(r[:, 0] if flat else r) for r in resampled])
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return float(low), float(high)


def steps_to_sustained(steps: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """First step from which `scores` [E] stay >= threshold to the end (NaN if they never do)."""
    steps = np.asarray(steps, np.float64)
    ok = np.asarray(scores, np.float64) >= threshold  # NaN counts as below
    if ok.size == 0 or not ok[-1]:
        return float("nan")
    # The last evaluation below the threshold; the run holds from the one after it.
    below = np.nonzero(~ok)[0]
    first = below[-1] + 1 if below.size else 0
    return float(steps[first])
