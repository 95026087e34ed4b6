"""Helpers shared by the CLI commands: tasks, specs and modes with clear errors."""

from __future__ import annotations

from pathlib import Path

from car_jax.errors import UserError


def load_task(task_id: str):
    """`envs.make(task_id)`, with an unknown id turned into a UserError."""
    import envs

    try:
        return envs.make(task_id)
    except envs.TaskError as err:
        raise UserError(str(err)) from None


def resolve_mode(task, mode: str | None) -> str:
    """The requested input mode, or the task's first one; refuse a mode the task lacks."""
    if mode is None:
        return task.modes[0]
    if mode not in task.modes:
        raise UserError(
            f"task {task.id!r} has no input mode {mode!r}; its modes: {', '.join(task.modes)}"
        )
    return mode


def load_spec(path: str | Path):
    """Read a RewardSpec file; a missing file or a file that does not parse is a UserError."""
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import RewardSpec

    path = Path(path)
    if not path.is_file():
        raise UserError(f"spec file {str(path)!r} does not exist")
    try:
        return RewardSpec.load(path)
    except DSLCompileError as err:
        lines = "\n  ".join(str(e) for e in err.errors)
        raise UserError(f"spec file {str(path)!r} cannot be read:\n  {lines}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise UserError(f"spec file {str(path)!r} cannot be read: {err}") from None


def compile_for(spec, task, mode: str):
    """Compile `spec` against `task`'s inputs of `mode`; refused programs become a UserError."""
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import compile_spec
    from car_jax.sprite_inputs import task_sprite_frames

    try:
        # With the task's sprite tables the programs also read cell ids (lazy frames, no drawing).
        sheets = task_sprite_frames(task, mode)
        return compile_spec(spec, task.inputs(mode), task.constants(mode), sprite_frames=sheets)
    except DSLCompileError as err:
        lines = "\n  ".join(str(e) for e in err.errors)
        raise UserError(
            f"{len(err.errors)} error(s) compiling the spec for {task.id} ({mode} mode):\n  {lines}",
            exit_code=1,
        ) from None


def add_training_arguments(p) -> None:
    """Training options shared by `car-jax train` and `car-jax run`."""
    g = p.add_argument_group("training")
    g.add_argument("--reward", default="both", choices=("car", "sparse", "both"),
                   help="car: env reward + code bonuses; sparse: env reward only; both (default)")  # fmt: skip
    g.add_argument("--seeds", type=int, default=2, help="seeds trained at once under vmap (2)")
    g.add_argument("--num-envs", type=int, default=None, help="parallel envs per seed")
    g.add_argument("--steps", type=int, default=None, help="env steps per seed (default per task)")
    g.add_argument("--lr", type=float, default=None, help="learning rate")
    g.add_argument("--bonus", type=float, default=0.5, help="bonus per sub-task (0.5)")
    g.add_argument("--shaping", default="bonus", choices=("bonus", "potential"),
                   help="one-time bonuses, or potential-based shaping (policy-invariant)")  # fmt: skip
    g.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def out_dir(args, prefix: str) -> Path:
    """--out, or runs/<prefix>-<timestamp>; --resume needs an existing --out."""
    import time

    if args.resume and not args.out:
        raise UserError("--resume needs --out DIR, the run directory to continue")
    if args.out:
        path = Path(args.out)
        if args.resume and not path.is_dir():
            raise UserError(f"--resume: run directory {str(path)!r} does not exist")
        return path
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def train_and_report(args, task, mode, compiled, run_dir: Path, title: str) -> dict:
    """Stage 3: train the chosen reward variants, then write summary.json and the learning curves."""
    from car_jax.experiment import (
        curves,
        episode_warmup,
        expand_rewards,
        make_config,
        summarize,
        train_variants,
        write_summary,
    )
    from car_jax.report import plot_curves

    if args.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {args.seeds}")
    config = make_config(task, args.steps, num_envs=args.num_envs, lr=args.lr)
    rewards = expand_rewards(args.reward)
    print(
        f"training {', '.join(rewards)} reward on {task.id} ({mode} mode): {args.seeds} seed(s) x "
        f"{config.num_updates * config.batch_size:,} env steps, {config.num_envs} envs each"
    )
    results = train_variants(
        task, compiled, mode, rewards, config, args.seeds, run_dir / "train",
        resume=args.resume, bonus=args.bonus, shaping=args.shaping, progress=not args.no_progress,
    )  # fmt: skip
    warmup = episode_warmup(task, config)
    summary = summarize(results, compiled.names, warmup=warmup)
    write_summary(run_dir / "summary.json", summary)
    plot_curves(curves(results, warmup_steps=warmup), run_dir / "learning_curve.png", title)
    for reward, s in summary.items():
        print(
            f"  {reward:>6}: final success {s['final_success']:.0%}, "
            f"{s['env_steps_per_second'] or 0:,.0f} env-steps/s, compile {s['compile_seconds']:.1f} s"
        )
    return {"results": results, "summary": summary, "config": config}
