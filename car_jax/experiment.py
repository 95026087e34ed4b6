"""Stage 3 glue: train PPO with the code reward and with the sparse reward, side by side.

`train_variants` builds one `CodeReward` env per reward variant ("car": env reward + code
reward; "sparse": the env reward alone, sub-task completion still logged), trains every variant
on the same seeds with `car_jax.rl.driver.train_run`; `curves` and `summarize` read the
evaluation metrics (fresh episodes, greedy policy, ground-truth success) of the results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from car_jax.errors import UserError
from car_jax.report import Curve, json_safe
from car_jax.reward import CodeReward, check_carried

REWARDS = ("car", "sparse")
LABELS = {"car": "code reward (CaR)", "sparse": "sparse reward"}
# The score every curve, summary and report is judged by.
SCORE = "eval_greedy_success"

# Per task: the PPO settings that `car-jax run` and the sample-efficiency benchmark train with by
# default where they differ from the family's (car_jax.rl.config.FAMILY_DEFAULTS): mostly the env
# steps per seed and the parallel envs per seed. Flags and explicit overrides still win. Chosen
# with benchmarks/results/defaults_sweep.json.
RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "MiniGrid-DoorKey-5x5": dict(total_timesteps=300_000, num_envs=128),
    "MiniGrid-DoorKey-6x6": dict(total_timesteps=500_000, num_envs=128),
    # 128 envs = 122 updates in 1M steps: greedy eval success 100% IQM over 5 seeds with the
    # progress observation (sample_efficiency.json); with 512 envs (30 updates) the stochastic
    # policy succeeded (99%) but the greedy one did not (0-3%, an earlier run without it).
    "MiniGrid-DoorKey-8x8": dict(total_timesteps=1_000_000, num_envs=128),
    # 128 envs (366 updates in 3M steps) with the progress observation: greedy 97% / 91% on 2
    # seeds; without it 78% / 69% (256 envs: 38% / 72%; 1024 envs, 45 updates: 0%). With the
    # carried-object view too, 5 seeds: 98% IQM, 4 of 5 sustained >= 90% (the fifth ends at 88%);
    # at 6M all five hold (99% IQM, sample_efficiency_long_carried.json).
    "MiniGrid-DoorKey-16x16": dict(total_timesteps=3_000_000, num_envs=128),
    "MiniGrid-Unlock": dict(total_timesteps=500_000, num_envs=128),
    "MiniGrid-UnlockPickUp": dict(total_timesteps=2_000_000, num_envs=128),
    "MiniGrid-BlockedUnlockPickUp": dict(total_timesteps=4_000_000, num_envs=256),
    "MiniGrid-Empty-8x8": dict(total_timesteps=300_000, num_envs=64),
    # gymnax-blines' MountainCar PPO (16 envs x 32 steps, 64 epochs x 4 minibatches, lr 5e-3,
    # entropy 0.003, gradient norm 1.0; their checkpoint's return is -118 after 5e5 steps). At the
    # classic family's settings with 64 envs both rewards ended at 0% over 1M steps, 5 seeds
    # (ablation_mountaincar.json). With these, 5 seeds: at 5e5 steps code reward 4 of 5 seeds
    # at 100% greedy success (the fifth 16%), sparse 1 of 5; at 1M code 5 of 5 (return -99 to
    # -101), sparse 3 of 5 (defaults_sweep.json). 1M it is: every code-reward seed holds.
    "MountainCar-v0": dict(
        total_timesteps=1_000_000,
        num_envs=16,
        num_steps=32,
        update_epochs=64,
        num_minibatches=4,
        lr=5e-3,
        ent_coef=0.003,
        max_grad_norm=1.0,
    ),
    # At the family's entropy weight 0.01 one seed of two (both rewards) stops at 7 bricks by 1M
    # steps and stays there; at 0.1 every seed of both rewards ends higher at the 5M budget
    # (greedy return: code 29/29 instead of 20/7, sparse 64/25 instead of 24/7; success still 0%
    # except one sparse seed at 69%). With gymnax-blines' discount 0.999 and constant learning
    # rate on top, greedy success at 5M: code 31% / 59% (was 0% / 0%), sparse 100% / 41% (was
    # 69% / 0%). defaults_full_budget.json (0.01), defaults_full_budget_breakout_ent0.1.json
    # (0.1), defaults_full_budget_breakout_g999.json (now), defaults_sweep.json (all of them).
    "Breakout-MinAtar": dict(ent_coef=0.1, gamma=0.999, anneal_lr=False),
}

# Families whose code reward shows the policy its sub-task progress by default (the index of the
# next sub-task, `CodeReward(progress_obs=True)`): MiniGrid's egocentric view does not show what the
# agent carries or has opened, so without it the code reward is not Markov in what the agent sees
# and a greedy (argmax) policy loops where views repeat. `--no-progress-obs` turns it off.
PROGRESS_OBS_FAMILIES = ("minigrid",)


# Families whose policy observation shows what the agent carries by default
# (`CodeReward(carried_obs=True)`, `Task.show_carried`), for the code reward and the sparse
# baseline alike: Farama MiniGrid's view draws the carried object in the agent's cell, xminigrid's
# does not. Without it, on UnlockPickUp the greedy policy cannot tell whether it still holds the
# key after opening the door and loops (85% greedy IQM at 4M steps, 100% stochastic; with it
# 100% at 2M, ablation_carried_obs.json). `--no-carried-obs` turns it off.
CARRIED_OBS_FAMILIES = ("minigrid",)


def _family_default(task, choice: bool | None, families: tuple[str, ...]) -> bool:
    """`choice` when given, else whether `task`'s family is one of `families`."""
    if choice is not None:
        return bool(choice)
    return getattr(task, "family", "") in families


def default_progress_obs(task, choice: bool | None = None) -> bool:
    """`choice` when given, else whether `task`'s family shows the progress by default."""
    return _family_default(task, choice, PROGRESS_OBS_FAMILIES)


def default_carried_obs(task, choice: bool | None = None) -> bool:
    """`choice` when given, else whether `task`'s family shows the carried object by default.

    Asking for it on a task without `show_carried` is refused here, before anything is trained.
    """
    if choice:
        check_carried(task, "--carried-obs")
    return _family_default(task, choice, CARRIED_OBS_FAMILIES)


# Training env-steps/s, all seeds together, on a 2-core CPU at the family's default envs (measured,
# rounded down), for the time estimate `car-jax run` prints before it starts: MiniGrid 30-48k
# (UnlockPickUp's code reward 16k), classic 44k (CartPole, 4 envs, loaded machine) to 190k, and
# 5 seeds in sample_efficiency.json; MinAtar 7-9k at 1-5 seeds (conv_vmap.json, with the patch
# convolution; 2.7k before it); reacher 18-23k (5 seeds, 512 envs).
STEPS_PER_SECOND = {"minigrid": 30_000, "classic": 40_000, "minatar": 7_000, "brax": 18_000}
# Tasks whose defaults run far from their family's rate: MountainCar's 64 epochs per update on
# 512-step batches, 11-14k env-steps/s (5 seeds, sample_efficiency.json and defaults_sweep.json).
TASK_STEPS_PER_SECOND = {"MountainCar-v0": 11_000}


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
    progress_obs: bool | None = None,
    carried_obs: bool | None = None,
) -> CodeReward:
    """The training env of one reward variant (the sparse one keeps logging sub-tasks).

    The discount of potential shaping is the learner's: PPO binds it when it trains. The progress
    observation (None: the family default, `default_progress_obs`) is part of the code reward
    variant only: the sparse baseline sees no progress. The carried object (None: the family
    default, `default_carried_obs`) is part of the observation of both.
    """
    progress_obs = default_progress_obs(task, progress_obs)
    code_weight = 1.0 if reward == "car" else 0.0
    return CodeReward(
        task,
        compiled,
        mode=mode,
        bonus=bonus,
        code_weight=code_weight,
        shaping=shaping,
        progress_obs=progress_obs and reward == "car",
        carried_obs=default_carried_obs(task, carried_obs),
    )


def make_config(
    task, steps: int | None = None, ppo: dict[str, Any] | None = None, **overrides: Any
):
    """PPO config: the task family's defaults, then the task's run defaults, then overrides.

    `ppo` holds any PPOConfig fields (`--ppo KEY=VALUE`, `car_jax.rl.config.parse_overrides`);
    `steps` and `overrides` come from named flags (None = not given). A field set by both is
    refused rather than one silently winning.
    """
    from car_jax.rl.config import PPOConfig

    given = {k: v for k, v in overrides.items() if v is not None}
    if steps:
        given["total_timesteps"] = int(steps)
    both = sorted(set(given) & set(ppo or {}))
    if both:
        raise UserError(
            f"{', '.join(both)} set both by --ppo and by its own flag (--steps sets "
            "total_timesteps); give each once"
        )
    return PPOConfig.for_family(
        task.family, **{**RUN_DEFAULTS.get(task.id, {}), **(ppo or {}), **given}
    )


def estimate_seconds(task, config, seeds: int, variants: int) -> float:
    """Rough training wall clock on a 2-core CPU (compile excluded), from the measured rates above."""
    rate = TASK_STEPS_PER_SECOND.get(task.id, STEPS_PER_SECOND.get(task.family, 5_000))
    # NOTE: seeds run vmapped in one program; on a CPU that costs about as much as sequentially.
    return config.num_updates * config.batch_size * seeds * variants / rate


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
    progress_obs: bool | None = None,
    carried_obs: bool | None = None,
) -> dict[str, Any]:
    """Train each reward variant on the same seeds; results keyed by variant, logs in out_dir/<variant>."""
    from car_jax.rl.driver import train_run

    out = Path(out_dir)
    results = {}
    for reward in rewards:
        env = make_env(task, compiled, mode, reward, bonus, shaping, progress_obs, carried_obs)
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


def curves(results: dict[str, Any], metric: str = SCORE) -> dict[str, Curve]:
    """Learning curves (env steps vs `metric`, one row per seed) of each trained variant.

    Only the updates where `metric` was logged are kept: for the `eval_*` metrics, the
    evaluations (fresh episodes every `eval_every` updates and after the last one).
    """
    out = {}
    for reward, res in results.items():
        m = res.metrics
        if metric not in m:
            raise UserError(f"training logged no {metric!r}; logged: {', '.join(sorted(m))}")
        steps = np.asarray(m["env_steps"])[0]
        values = np.asarray(m[metric], float)
        logged = np.isfinite(values).any(axis=0)
        out[LABELS.get(reward, reward)] = Curve(steps[logged], values[:, logged])
    return out


def plot_curves_of(
    results: dict[str, Any], path: str | Path, title: str, quantity: str = "success"
) -> Path:
    """Greedy (solid, with its 95% CI) and stochastic (dashed) eval `quantity` of every variant.

    `quantity`: "success" (the score) or "return" (the env reward's episode return, which shows
    progress where success stays at 0, e.g. bricks broken in Breakout).
    """
    from car_jax.report import plot_curves

    if quantity not in ("success", "return"):
        raise UserError(f"can plot eval success or return, not {quantity!r}")
    greedy, stochastic = f"eval_greedy_{quantity}", f"eval_stochastic_{quantity}"
    shown = dict(curves(results, greedy))
    if all(stochastic in r.metrics for r in results.values()):
        for label, c in curves(results, stochastic).items():
            shown[f"{label}, stochastic"] = c
    return plot_curves(
        shown, path, title, ylabel=f"eval {quantity} (greedy solid, stochastic dashed)"
    )


def summarize(results: dict[str, Any], names: Sequence[str], threshold: float = 0.9) -> dict:
    """JSON-ready summary per variant, judged by evaluation on fresh episodes.

    Final scores are the last evaluation's, per seed and as the IQM over seeds with a 95%
    stratified-bootstrap interval; "steps to" is per seed the first evaluation from which
    greedy success stays >= threshold to the end, with the seed median and how many got there.
    Training-episode figures are kept under `train_*`.
    """
    pct = int(round(threshold * 100))
    summary = {}
    for reward, res in results.items():
        m = res.metrics
        greedy = curves({reward: res})[LABELS.get(reward, reward)]
        low, high = greedy.final_interval()
        per_seed_steps = greedy.seed_steps_to(threshold)
        entry = {
            "seeds": list(res.seeds),
            "score": f"{SCORE}: success of the greedy policy on fresh evaluation episodes",
            "final_success": greedy.final(),
            "final_success_ci95": [low, high],
            "final_success_per_seed": greedy.final_per_seed().tolist(),
            f"steps_to_{pct}pct": greedy.steps_to(threshold),
            f"steps_to_{pct}pct_per_seed": per_seed_steps.tolist(),
            f"seeds_reaching_{pct}pct": int(np.isfinite(per_seed_steps).sum()),
        }
        for name in ("eval_stochastic_success", "eval_greedy_return", "eval_stochastic_return",
                     "eval_greedy_length"):  # fmt: skip
            if name in m:
                c = curves({reward: res}, name)[LABELS.get(reward, reward)]
                entry[f"final_{name}"] = c.final()
                if name.endswith("_return"):  # to set beside the field's published returns
                    entry[f"final_{name}_per_seed"] = c.final_per_seed().tolist()
        rates = np.asarray(m.get("eval_greedy_subtask_rate", np.zeros((1, 1, 0))), float)
        final_sub = rates[:, -1, :].mean(axis=0) if rates.size else np.zeros(0)
        entry["final_subtask_rates"] = dict(zip(names, np.round(final_sub, 4).tolist()))
        if "train_success_rate" in m:
            tail = np.asarray(m["train_success_rate"], float)[:, -3:]
            entry["train_episodes_final_success"] = (
                float(np.nanmean(tail)) if np.isfinite(tail).any() else float("nan")
            )
        steps = float(np.asarray(m["env_steps"])[0, -1]) * len(res.seeds)
        entry.update(
            compile_seconds=res.compile_seconds,
            train_seconds=res.train_seconds,
            env_steps_per_second=steps / res.train_seconds if res.train_seconds else None,
        )
        summary[reward] = entry
    return summary


def write_summary(path: str | Path, summary: dict) -> Path:
    """Write the summary as JSON (NaN -> null)."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(summary), indent=2) + "\n")
    return path
