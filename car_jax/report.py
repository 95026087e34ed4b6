"""Reports of a run: the learning-curve plot and a short markdown summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from car_jax.jsonutil import json_safe  # noqa: F401  (moved; re-exported here)


class Curve:
    """One learning curve over seeds: env steps [U] and a metric [S, U] (seeds x updates)."""

    def __init__(self, steps: np.ndarray, values: np.ndarray):
        self.steps = np.asarray(steps, float)
        self.values = np.atleast_2d(np.asarray(values, float))

    @property
    def mean(self) -> np.ndarray:
        """Mean over seeds, ignoring NaN (updates where no episode ended)."""
        return _nanreduce(np.nanmean, self.values)

    @property
    def low(self) -> np.ndarray:
        """Lower edge of the spread band: the minimum over seeds."""
        return _nanreduce(np.nanmin, self.values)

    @property
    def high(self) -> np.ndarray:
        """Upper edge of the spread band: the maximum over seeds."""
        return _nanreduce(np.nanmax, self.values)

    def steps_to(self, threshold: float) -> float:
        """First env step at which the seed-mean reaches `threshold` (NaN if never)."""
        hit = np.nonzero(self.mean >= threshold)[0]
        return float(self.steps[hit[0]]) if hit.size else float("nan")

    def final(self, last: int = 3) -> float:
        """Seed-mean over the last `last` points."""
        tail = self.mean[-last:]
        return float(_nanreduce(np.nanmean, tail)) if np.isfinite(tail).any() else float("nan")


def _nanreduce(fn, values: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return fn(values, axis=0)


def plot_curves(
    curves: Mapping[str, Curve], path: str | Path, title: str, ylabel: str = "success rate"
) -> Path:
    """Plot mean +- spread (min..max over seeds) of each curve against env steps to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, c in curves.items():
        n = c.values.shape[0]
        (line,) = ax.plot(c.steps, c.mean, label=f"{label} ({n} seed{'s' if n != 1 else ''})")
        if n > 1:
            ax.fill_between(c.steps, c.low, c.high, alpha=0.2, color=line.get_color(), lw=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ylabel == "success rate":
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt_steps(x: float) -> str:
    if x != x:
        return "not reached"
    return f"{x / 1e6:.2f}M" if x >= 1e5 else f"{x:,.0f}"


def run_report(
    task_id: str,
    mode: str,
    spec_source: str,
    verdict_md: str,
    curves: Mapping[str, Curve],
    stage1_note: str,
    train_note: str,
    threshold: float = 0.9,
) -> str:
    """The markdown report of a `car-jax run`: stages, verdict, and a results table."""
    rows = [
        f"| reward | seeds | final success | env steps to {threshold:.0%} success |",
        "|---|---|---|---|",
    ]
    for label, c in curves.items():
        rows.append(
            f"| {label} | {c.values.shape[0]} | {c.final():.0%} | {_fmt_steps(c.steps_to(threshold))} |"
        )
    return "\n".join(
        [
            f"# car-jax run: {task_id} ({mode} mode)",
            "",
            "![initial state](initial.png) ![goal state](goal.png)",
            "",
            "## Stage 1: reward programs",
            stage1_note,
            "",
            "```python",
            spec_source.rstrip(),
            "```",
            "",
            "## Stage 2: verification",
            verdict_md.rstrip(),
            "",
            "## Stage 3: training",
            train_note,
            "",
            *rows,
            "",
            "![learning curves](learning_curve.png)",
            "",
        ]
    )
