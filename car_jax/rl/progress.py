"""The progress bar of a training run: throughput, ETA, the latest evaluation, sub-task rates."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

# Shown on the bar, in this order, when logged: (metric, label).
SHOWN = (
    ("eval_greedy_success", "eval success greedy"),
    ("eval_stochastic_success", "stochastic"),
    ("eval_greedy_return", "eval return"),
    ("eval_greedy_subtask_rate", "sub-tasks"),
)


def chunk_summary(metrics: dict, steps_per_second: float, update: int) -> dict[str, Any]:
    """A chunk's metrics [S, n, ...] in a few numbers: throughput, then per metric the seed mean
    at the chunk's last update where it is logged (evaluations are not logged every update)."""
    out: dict[str, Any] = {"update": update, "steps_per_second": steps_per_second}
    names = [name for name, _ in SHOWN] + [
        "train_episode_return",
        "train_success_rate",
        "train_subtask_rate",
    ]
    for name in names:
        if name not in metrics:
            continue
        v = np.asarray(metrics[name], np.float64)  # [S, n, ...]
        per_update = v.reshape(v.shape[0], v.shape[1], -1)
        logged = np.isfinite(per_update).any(axis=(0, 2))
        if not logged.any():
            continue
        last = np.nonzero(logged)[0][-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[name] = np.nanmean(v[:, last], axis=0)
    return out


class ProgressBar:
    """A rich progress bar over updates with elapsed time and ETA; a no-op when disabled."""

    def __init__(self, label: str, total: int, done: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=Console(stderr=True),
        )
        self.task = self.progress.add_task(label, total=total, completed=done, stats="compiled")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, step: int, summary: dict[str, Any]) -> None:
        """Show the latest chunk's throughput, evaluation success and sub-task rates."""
        if not self.enabled:
            return
        self.progress.update(self.task, completed=step, stats=format_summary(summary))


def format_summary(summary: dict[str, Any]) -> str:
    """One line: steps/s, then the evaluation (or, without one, the training episodes)."""
    parts = [f"{summary['steps_per_second']:,.0f} steps/s"]
    for name, label in SHOWN:
        if name in summary:
            v = np.atleast_1d(summary[name])
            parts.append(f"{label} " + " ".join(f"{x:.2f}" for x in v))
    if "eval_greedy_success" not in summary and "train_success_rate" in summary:
        parts.append(f"train success {float(summary['train_success_rate']):.2f}")
    if "eval_greedy_return" not in summary and "train_episode_return" in summary:
        parts.append(f"train return {float(summary['train_episode_return']):.3f}")
    return "  ".join(parts)
