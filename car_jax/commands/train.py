"""`car-jax train`: PPO with a reward spec's code reward (and/or the sparse reward)."""

from __future__ import annotations

from car_jax.commands._common import (
    add_training_arguments,
    compile_for,
    load_spec,
    load_task,
    out_dir,
    resolve_mode,
    train_and_report,
)

NAME = "train"
HELP = "Train PPO agents with a reward spec's code reward and/or the sparse env reward."


def add_arguments(p) -> None:
    p.add_argument("task", metavar="ID", help="task id (see `car-jax envs`)")
    p.add_argument("--spec", required=True, help="reward spec file (DSL source)")
    p.add_argument("--mode", default=None, help="program input mode (default: the task's first)")
    p.add_argument("--out", default=None, help="run directory (default runs/train-<ID>-<time>)")
    add_training_arguments(p)


def run(args) -> int:
    task = load_task(args.task)
    mode = resolve_mode(task, args.mode)
    compiled = compile_for(load_spec(args.spec), task, mode)
    run_dir = out_dir(args, f"train-{task.id}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.py").write_text(compiled.spec.to_source())
    train_and_report(args, task, mode, compiled, run_dir, f"{task.id} ({mode} mode)")
    print(f"wrote {run_dir}")
    return 0
