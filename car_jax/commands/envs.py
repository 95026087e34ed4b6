"""`car-jax envs`: list the registered tasks with their input modes and whether an expert exists."""

from __future__ import annotations

import argparse
import sys

NAME = "envs"
HELP = "list the registered tasks, their program-input modes and whether a scripted expert exists"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--family` filters the list."""
    parser.add_argument(
        "--family", help="only tasks of this family (minigrid, classic, minatar, brax)"
    )


def run(args: argparse.Namespace) -> int:
    """Print one line per task."""
    import envs
    from car_jax.errors import UserError

    rows = []
    for task_id in envs.registered():
        try:
            task = envs.make(task_id)
        except envs.TaskError as err:  # e.g. a plugin task that fails to build
            print(f"car-jax envs: skipped {task_id}: {err}", file=sys.stderr)
            continue
        if args.family and task.family != args.family:
            continue
        action = (
            f"{task.action.n} discrete"
            if task.action.kind == "discrete"
            else f"{task.action.dim} continuous"
        )
        rows.append(
            (
                task_id,
                task.family,
                ",".join(task.modes),
                action,
                str(task.max_steps),
                "yes" if task.expert else "no",
            )
        )
    if not rows:
        raise UserError(f"no registered task has family {args.family!r}")
    header = ("id", "family", "modes", "actions", "max_steps", "expert")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0
