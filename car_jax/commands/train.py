"""`car-jax train`: PPO with a reward spec's code reward (and/or the sparse reward).

Also home of the training options and the stage-3 routine that `car-jax run` shares.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from car_jax.commands._common import compile_for, load_spec, load_task, out_dir, resolve_mode
from car_jax.errors import UserError

NAME = "train"
HELP = "Train PPO agents with a reward spec's code reward and/or the sparse env reward."

# `run` warns before training when the estimate exceeds this many seconds.
LONG_RUN_SECONDS = 300.0


def add_arguments(p) -> None:
    p.add_argument("task", metavar="ID", help="task id (see `car-jax envs`)")
    p.add_argument("--spec", required=True, action="append",
                   help="reward spec file (DSL source); repeat it to train several specs side by "
                   "side in one compiled program (see docs/search.md)")  # fmt: skip
    p.add_argument("--mode", default=None, help="program input mode (default: the task's first)")
    p.add_argument("--out", default=None, help="run directory (default runs/train-<ID>-<time>)")
    add_training_arguments(p)


# `--reward` of `train` and `run`: each choice and what it trains.
REWARDS = {
    "car": "env reward + code reward",
    "sparse": "env reward only",
    "both": "the two side by side",
}


def add_training_arguments(
    p, rewards: dict[str, str] | None = None, default_reward: str = "both"
) -> None:
    """Training options shared by `car-jax train`, `run` and `search` (`--reward`'s choices and
    their help from `rewards`, default `default_reward`)."""
    rewards = REWARDS if rewards is None else rewards
    choices = "; ".join(f"{k}: {v}" + (" (default)" if k == default_reward else "")
                        for k, v in rewards.items())  # fmt: skip
    g = p.add_argument_group("training")
    g.add_argument("--reward", default=default_reward, choices=tuple(rewards), help=choices)
    g.add_argument("--seeds", type=int, default=2, help="seeds trained at once under vmap (2)")
    g.add_argument("--num-envs", type=int, default=None, help="parallel envs per seed")
    g.add_argument("--steps", type=int, default=None, help="env steps per seed (default per task)")
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--ent-coef", type=float, default=None,
                   help="entropy bonus weight (default per task family; Breakout-MinAtar 0.1)")  # fmt: skip
    g.add_argument("--ppo", action="append", default=None, metavar="KEY=VALUE",
                   help="set any PPO setting (a PPOConfig field, see docs/training.md), e.g. "
                   "--ppo gamma=0.999 --ppo anneal_lr=false; repeatable")  # fmt: skip
    g.add_argument("--bonus", type=float, default=0.5,
                   help="reward per sub-task (0.5); under --shaping potential, Phi is their sum")  # fmt: skip
    g.add_argument("--shaping", default="bonus", choices=("bonus", "potential"),
                   help="one-time bonuses, or potential-based shaping (keeps the optimal policy)")  # fmt: skip
    g.add_argument("--progress-obs", action=argparse.BooleanOptionalAction, default=None,
                   help="show the code reward's policy its sub-task progress (next sub-task's "
                   "index); default: on for MiniGrid, off elsewhere")  # fmt: skip
    g.add_argument("--carried-obs", action=argparse.BooleanOptionalAction, default=None,
                   help="draw what the agent carries into every reward's observation (as Farama "
                   "MiniGrid does); default: on for MiniGrid, where only it is offered")  # fmt: skip
    g.add_argument("--eval-every", type=int, default=None,
                   help="updates between evaluations on fresh episodes (default: ~10 per run)")  # fmt: skip
    g.add_argument("--eval-episodes", type=int, default=None,
                   help="evaluation episodes per policy, greedy and stochastic (32)")  # fmt: skip
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    task = load_task(args.task)
    mode = resolve_mode(task, args.mode)
    training_config(args, task)  # bad training flags are refused before any spec is compiled
    if len(args.spec) > 1:
        return run_several(args, task, mode)
    compiled = compile_for(load_spec(args.spec[0]), task, mode)
    run_dir = out_dir(args, f"train-{task.id}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.py").write_text(compiled.spec.to_source())
    train_and_report(args, task, mode, compiled, run_dir, f"{task.id} ({mode} mode)")
    print(f"wrote {run_dir}")
    return 0


def training_config(args, task):
    """The PPO config of a `train`/`run` call: task defaults, then the command-line flags."""
    from car_jax.experiment import make_config
    from car_jax.rl.config import parse_overrides

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    if args.ent_coef is not None and args.ent_coef < 0:
        raise UserError(f"--ent-coef must be >= 0, got {args.ent_coef}")
    return make_config(task, args.steps, parse_overrides(args.ppo), num_envs=args.num_envs, lr=args.lr,
                       ent_coef=args.ent_coef, eval_every=args.eval_every,
                       eval_episodes=args.eval_episodes)  # fmt: skip


def warn_if_long(task, config, seeds: int, variants: int) -> float:
    """Print the training-time estimate, and how to cut it, when it exceeds a few minutes."""
    from car_jax.experiment import estimate_seconds

    seconds = estimate_seconds(task, config, seeds, variants)
    if seconds > LONG_RUN_SECONDS:
        steps = config.num_updates * config.batch_size
        smaller = max(config.batch_size, int(steps * LONG_RUN_SECONDS / seconds))
        print(
            f"note: this trains {variants} reward(s) x {seeds} seed(s) x {steps:,} env steps; "
            f"estimated {seconds / 60:.0f} min on a 2-core CPU (plus compile). For a smaller "
            f"budget pass --steps {smaller:,} (about {LONG_RUN_SECONDS / 60:.0f} min), "
            "--seeds 1 or --reward car."
        )
    return seconds


def train_and_report(args, task, mode, compiled, run_dir: Path, title: str) -> dict:
    """Stage 3: train the chosen reward variants, then write summary.json and the learning curves."""
    from car_jax.experiment import (
        default_carried_obs,
        default_progress_obs,
        expand_rewards,
        plot_curves_of,
        summarize,
        train_variants,
        write_summary,
    )

    config = training_config(args, task)
    args.progress_obs = default_progress_obs(task, args.progress_obs)
    args.carried_obs = default_carried_obs(task, args.carried_obs)
    rewards = expand_rewards(args.reward)
    print(
        f"training {', '.join(rewards)} reward on {task.id} ({mode} mode): {args.seeds} seed(s) x "
        f"{config.num_updates * config.batch_size:,} env steps, {config.num_envs} envs each; "
        f"evaluation every {config.eval_interval} updates on {config.eval_episodes} fresh "
        "episodes per policy (greedy, stochastic)"
    )
    warn_if_long(task, config, args.seeds, len(rewards))
    t0 = time.perf_counter()
    results = train_variants(
        task, compiled, mode, rewards, config, args.seeds, run_dir / "train",
        resume=args.resume, bonus=args.bonus, shaping=args.shaping, progress=not args.no_progress,
        progress_obs=args.progress_obs, carried_obs=args.carried_obs,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    summary = summarize(results, compiled.names)
    write_summary(run_dir / "summary.json", summary)
    plot_curves_of(results, run_dir / "learning_curve.png", title)
    for reward, s in summary.items():
        per_seed = " ".join(f"{x:.0%}" for x in s["final_success_per_seed"])
        stochastic = s.get("final_eval_stochastic_success")
        sampled = "" if stochastic is None else f", stochastic policy {stochastic:.0%}"
        print(
            f"  {reward:>6}: greedy eval success {s['final_success']:.0%} (IQM; per seed "
            f"{per_seed}){sampled}, {s['env_steps_per_second'] or 0:,.0f} env-steps/s, compile "
            f"{s['compile_seconds']:.1f} s, train {s['train_seconds']:.1f} s"
        )
    compile_s = sum(r.compile_seconds for r in results.values())
    train_s = sum(r.train_seconds for r in results.values())
    return {"results": results, "summary": summary, "config": config,
            "compile_seconds": compile_s, "train_seconds": train_s, "wall_seconds": wall}  # fmt: skip


def spec_names(paths: list[str]) -> list[str]:
    """Run-folder names of spec files: their stems, numbered where two stems are the same."""
    stems = [Path(p).name.removesuffix(".py") for p in paths]
    return [s if stems.count(s) == 1 else f"{s}-{i}" for i, s in enumerate(stems)]


def run_several(args, task, mode) -> int:
    """`car-jax train ID --spec A --spec B ...`: every spec x seed in one compiled program."""
    names = spec_names(args.spec)
    compiled = [compile_for(load_spec(p), task, mode) for p in args.spec]
    if args.reward == "sparse":
        raise UserError("--reward sparse trains no spec; with several --spec use car or both")
    if args.reward == "both":  # the sparse baseline: the first spec's sub-tasks, logged only
        if "sparse" in names:
            raise UserError("a spec file is named sparse.py; rename it or pass --reward car")
        names, compiled = [*names, "sparse"], [*compiled, compiled[0]]
    run_dir = out_dir(args, f"train-{task.id}")
    train_several_and_report(args, task, mode, compiled, names, run_dir,
                             f"{task.id} ({mode} mode): {len(names)} rewards side by side")  # fmt: skip
    print(f"wrote {run_dir}")
    return 0


def train_several_and_report(args, task, mode, compiled, names, run_dir: Path, title: str) -> dict:
    """Train several compiled specs in one program (a spec named "sparse" pays no code reward),
    then write per-spec logs, summary.json, comparison.md and comparison.png in `run_dir`."""
    from car_jax.experiment import default_carried_obs, default_progress_obs
    from car_jax.multi import train_specs, write_comparison
    from car_jax.reward import CodeReward

    config = training_config(args, task)
    weights = [0.0 if n == "sparse" else 1.0 for n in names]
    print(
        f"training {len(names)} rewards ({', '.join(names)}) on {task.id} ({mode} mode) in one "
        f"program: {args.seeds} seed(s) each x {config.num_updates * config.batch_size:,} env "
        f"steps, {config.num_envs} envs each; evaluation every {config.eval_interval} updates on "
        f"{config.eval_episodes} fresh episodes per policy"
    )
    warn_if_long(task, config, args.seeds, len(names))
    args.progress_obs = default_progress_obs(task, args.progress_obs)
    args.carried_obs = default_carried_obs(task, args.carried_obs)
    env = CodeReward(task, compiled, mode, bonus=args.bonus, code_weight=weights,
                     shaping=args.shaping, progress_obs=args.progress_obs,
                     carried_obs=args.carried_obs)  # fmt: skip
    result = train_specs(config, env, names, args.seeds, run_dir, resume=args.resume,
                         progress=not args.no_progress)  # fmt: skip
    summary = write_comparison(result, title)
    for name in names:
        s = summary[name]
        per_seed = " ".join(f"{x:.0%}" for x in s["final_success_per_seed"])
        print(
            f"  {name:>12}: greedy eval success {s['final_success']:.0%} (IQM; per seed {per_seed})"
        )
    total = summary["all specs"]
    print(
        f"  one program: compile {total['compile_seconds']:.1f} s, train "
        f"{total['train_seconds']:.1f} s, {total['env_steps_per_second'] or 0:,.0f} env-steps/s"
    )
    return {"result": result, "summary": summary, "config": config}
