"""Reports of a run: the learning-curve plot and a short markdown summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from car_jax.jsonutil import json_safe  # noqa: F401  (moved; re-exported here)
from car_jax.stats import bootstrap_ci, iqm, steps_to_sustained


class Curve:
    """One learning curve over seeds: env steps [E] and a score [S, E] (seeds x evaluations).

    Aggregates follow the field's protocol: per point the interquartile mean over seeds with a
    95% stratified-bootstrap interval; thresholds are per seed and sustained (see `steps_to`).
    """

    def __init__(self, steps: np.ndarray, values: np.ndarray):
        self.steps = np.asarray(steps, float)
        self.values = np.atleast_2d(np.asarray(values, float))

    @property
    def seeds(self) -> int:
        """Number of seeds (rows)."""
        return self.values.shape[0]

    @property
    def iqm(self) -> np.ndarray:
        """Interquartile mean over seeds at every point."""
        return iqm(self.values, axis=0)

    def interval(self, reps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """95% stratified-bootstrap interval of the IQM at every point (over seeds)."""
        bounds = np.asarray(
            [bootstrap_ci(self.values[:, i], reps=reps) for i in range(self.values.shape[1])]
        )
        return bounds[:, 0], bounds[:, 1]

    def seed_steps_to(self, threshold: float) -> np.ndarray:
        """Per seed: the first evaluation from which the score stays >= threshold (NaN: never)."""
        return np.asarray([steps_to_sustained(self.steps, v, threshold) for v in self.values])

    def steps_to(self, threshold: float) -> float:
        """Median over seeds of `seed_steps_to` (NaN unless at least half the seeds got there)."""
        per_seed = np.sort(self.seed_steps_to(threshold))  # NaN sorts last: "never" is largest
        n = per_seed.size
        mid = per_seed[(n - 1) // 2 : n // 2 + 1]
        return float(mid.mean()) if np.isfinite(mid).all() else float("nan")

    def final_per_seed(self) -> np.ndarray:
        """Each seed's score at the last evaluation."""
        return self.values[:, -1]

    def final(self) -> float:
        """IQM over seeds of the last evaluation's score."""
        return float(iqm(self.final_per_seed()))

    def final_interval(self, reps: int = 2000) -> tuple[float, float]:
        """95% stratified-bootstrap interval of `final()`."""
        return bootstrap_ci(self.final_per_seed(), reps=reps)


def plot_curves(
    curves: Mapping[str, Curve], path: str | Path, title: str, ylabel: str = "eval success (greedy)"
) -> Path:
    """Plot the IQM over seeds of each curve with its 95% bootstrap interval, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, c in curves.items():
        n = c.seeds
        style = "--" if "stochastic" in label else "-"  # the sampling policy: dashed
        (line,) = ax.plot(
            c.steps,
            c.iqm,
            style,
            marker=".",
            label=f"{label} (IQM, {n} seed{'s' if n != 1 else ''})",
        )
        if n > 1:
            low, high = c.interval()
            ax.fill_between(c.steps, low, high, alpha=0.2, color=line.get_color(), lw=0)
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if "success" in ylabel:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.text(0.01, 0.01, "shaded: 95% stratified-bootstrap CI over seeds", fontsize=7, alpha=0.7)
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
        f"| reward | seeds | final greedy eval success: IQM [95% CI] | per seed "
        f"| env steps to sustained {threshold:.0%}: median (seeds there) |",
        "|---|---|---|---|---|",
    ]
    for label, c in curves.items():
        low, high = c.final_interval()
        reached = int(np.isfinite(c.seed_steps_to(threshold)).sum())
        per_seed = " ".join(f"{x:.0%}" for x in c.final_per_seed())
        rows.append(
            f"| {label} | {c.seeds} | {c.final():.0%} [{low:.0%}, {high:.0%}] | {per_seed} "
            f"| {_fmt_steps(c.steps_to(threshold))} ({reached}/{c.seeds}) |"
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
