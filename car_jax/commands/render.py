"""`car-jax render ID --out DIR`: write the task's initial.png and goal.png (what the VLM sees)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "render"
HELP = "write initial.png and goal.png of a task (the goal is the expert run to success)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Task id, output folder, seed."""
    parser.add_argument("task", metavar="ID", help="registered task id (see `car-jax envs`)")
    parser.add_argument(
        "--out", required=True, type=Path, help="folder for initial.png and goal.png"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode (default 0)")


def run(args: argparse.Namespace) -> int:
    """Render the initial state and the expert's goal state as PNGs."""
    import jax
    from PIL import Image

    import envs
    from car_jax.errors import UserError

    try:
        task = envs.make(args.task)
    except envs.TaskError as err:
        raise UserError(str(err)) from None
    if task.expert is None:
        raise UserError(f"task {task.id!r} has no scripted expert, so no goal state to render")
    key = jax.random.key(args.seed)
    goal = task.goal_state(key)
    if not bool(task.success(goal)):
        raise UserError(
            f"the expert did not reach the goal of {task.id!r} with seed {args.seed}; try another --seed"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, state in (("initial", task.initial_state(jax.random.split(key)[1])), ("goal", goal)):
        path = args.out / f"{name}.png"
        Image.fromarray(task.render(state)).save(path)
        print(path)
    return 0
