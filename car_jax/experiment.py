"""Stage 3 glue: train PPO with the code reward and with the sparse reward, side by side.

`train_variants` builds one `CodeReward` env per reward variant ("car": env reward + code
bonuses; "sparse": the env reward alone, sub-task completion still logged), trains every variant
on the same seeds with `car_jax.rl.driver.train_run`, and returns learning curves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from car_jax.errors import UserError
from car_jax.report import Curve, json_safe
from car_jax.reward import CodeReward

REWARDS = ("car", "sparse")
LABELS = {"car": "code reward (CaR)", "sparse": "sparse reward"}

# Per task: (env steps per seed, parallel envs per seed) that `car-jax run` and the
# sample-efficiency benchmark train with by default. Fewer envs for small budgets, so that
# training gets enough updates (budget / (envs * rollout length)).
RUN_DEFAULTS: dict[str, tuple[int, int]] = {
    "MiniGrid-DoorKey-5x5": (300_000, 128),
    "MiniGrid-DoorKey-6x6": (500_000, 256),
    "MiniGrid-DoorKey-8x8": (1_000_000, 512),
    "MiniGrid-DoorKey-16x16": (3_000_000, 1024),
    "MiniGrid-Unlock": (500_000, 256),
    "MiniGrid-UnlockPickUp": (2_000_000, 512),
    "MiniGrid-BlockedUnlockPickUp": (4_000_000, 1024),
    "MiniGrid-Empty-8x8": (300_000, 256),
    "MountainCar-v0": (1_000_000, 64),
}


def expand_rewards(choice: str) -> tuple[str, ...]:
    """'car' | 'sparse' | 'both' -> the variants to train."""
    if choice == "both":
        return REWARDS
    if choice not in REWARDS:
        raise UserError(f"unknown reward {choice!r}; expected car, sparse or both")
    return (choice,)


def make_env(
    task,
    compiled,
    mode: str,
    reward: str,
    bonus: float = 0.5,
    shaping: str = "bonus",
    gamma: float = 0.99,
) -> CodeReward:
    """The training env of one reward variant (the sparse one keeps logging sub-tasks)."""
    code_weight = 1.0 if reward == "car" else 0.0
    return CodeReward(
        task,
        compiled,
        mode=mode,
        bonus=bonus,
        code_weight=code_weight,
        shaping=shaping,
        gamma=gamma,
    )


def make_config(task, steps: int | None = None, **overrides: Any):
    """PPO config: the task family's defaults, then the task's run defaults, then overrides."""
    from car_jax.rl.config import PPOConfig

    default_steps, default_envs = RUN_DEFAULTS.get(task.id, (None, None))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if steps or default_steps:
        overrides["total_timesteps"] = int(steps or default_steps)
    if default_envs and "num_envs" not in overrides:
        overrides["num_envs"] = default_envs
    return PPOConfig.for_family(task.family, **overrides)


def train_variants(
    task,
    compiled,
    mode: str,
    rewards: Sequence[str],
    config,
    seeds: int | Sequence[int],
    out_dir: str | Path,
    resume: bool = False,
    bonus: float = 0.5,
    shaping: str = "bonus",
    progress: bool = True,
) -> dict[str, Any]:
    """Train each reward variant on the same seeds; results keyed by variant, logs in out_dir/<variant>."""
    from car_jax.rl.driver import train_run

    out = Path(out_dir)
    results = {}
    for reward in rewards:
        env = make_env(task, compiled, mode, reward, bonus, shaping, config.gamma)
        results[reward] = train_run(
            config,
            env,
            seeds,
            out / reward,
            resume=resume,
            progress=progress,
            label=f"{task.id} {reward}",
        )
    return results


def curves(
    results: dict[str, Any],
    metric: str = "success_rate",
    warmup_steps: int = 0,
    window: int = 4,
) -> dict[str, Curve]:
    """Learning curves (env steps vs `metric`, one row per seed) of each trained variant.

    Each point pools the episodes that ended in the last `window` updates (weighted by their
    count, so an update where a few episodes ended weighs little). Points before
    `warmup_steps` env steps are blanked (NaN): all envs start together, so until every env has
    run a whole episode the episodes that ended are the quick successes, and then the failures
    time out all at once (pass `max_steps * num_envs`).
    """
    out = {}
    for reward, res in results.items():
        m = res.metrics
        if metric not in m:
            raise UserError(f"training logged no {metric!r}; logged: {', '.join(sorted(m))}")
        steps = np.asarray(m["env_steps"])[0]
        values = np.asarray(m[metric], float)
        if "episodes" in m and window > 1:
            values = _pooled(values, np.asarray(m["episodes"], float), window)
        values = values.copy()
        values[:, steps < warmup_steps] = np.nan
        out[LABELS.get(reward, reward)] = Curve(steps, values)
    return out


def _pooled(rate: np.ndarray, episodes: np.ndarray, window: int) -> np.ndarray:
    """Episode-weighted mean of `rate` [S, U] over a trailing window of updates."""
    hits = np.where(np.isfinite(rate), rate, 0.0) * episodes

    def trailing_sum(x):
        c = np.cumsum(x, axis=1)
        c[:, window:] = c[:, window:] - c[:, :-window]
        return c

    n = trailing_sum(episodes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, trailing_sum(hits) / n, np.nan)


def episode_warmup(task, config) -> int:
    """Env steps per seed until every env has finished at least one episode."""
    return int(task.max_steps) * int(config.num_envs)


def summarize(
    results: dict[str, Any], names: Sequence[str], threshold: float = 0.9, warmup: int = 0
) -> dict:
    """JSON-ready summary: per variant, final success, steps to threshold, sub-task rates, speed."""
    summary = {}
    for reward, res in results.items():
        c = curves({reward: res}, warmup_steps=warmup)[LABELS.get(reward, reward)]
        sub = np.asarray(res.metrics.get("subtask_rate", np.zeros((1, 1, 0))), float)
        final_sub = []
        if sub.size and np.isfinite(sub[:, -3:, :]).any():
            final_sub = np.nanmean(sub[:, -3:, :], axis=(0, 1))
        steps = float(c.steps[-1]) * len(res.seeds) if c.steps.size else 0.0
        summary[reward] = {
            "seeds": list(res.seeds),
            "final_success": c.final(),
            f"steps_to_{int(threshold * 100)}pct": c.steps_to(threshold),
            "final_subtask_rates": dict(zip(names, np.asarray(final_sub, float).round(4).tolist())),
            "compile_seconds": res.compile_seconds,
            "train_seconds": res.train_seconds,
            "env_steps_per_second": steps / res.train_seconds if res.train_seconds else None,
        }
    return summary


def write_summary(path: str | Path, summary: dict) -> Path:
    """Write the summary as JSON (NaN -> null)."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    return path
