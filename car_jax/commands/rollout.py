"""`car-jax rollout ID --policy expert|random -n N --out FILE.npz`: save trajectories to a file."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "rollout"
HELP = "collect expert or random trajectories of a task and save them as a .npz trajectory file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Task id, policy, episode count, output file, mode, horizon, seed."""
    parser.add_argument("task", metavar="ID", help="registered task id (see `car-jax envs`)")
    parser.add_argument("--policy", choices=("expert", "random"), default="expert")
    parser.add_argument("-n", type=int, default=64, help="number of episodes (default 64)")
    parser.add_argument("--out", required=True, type=Path, help="output .npz file")
    parser.add_argument("--mode", default="state", help="program input mode (default: state)")
    parser.add_argument(
        "--horizon", type=int, default=None, help="states per episode (default: time limit + 1)"
    )
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Collect the rollouts in one jitted call and write the file."""
    import jax

    import envs
    from car_jax.errors import UserError
    from car_jax.rollout import collect_rollouts, save_trajectories

    try:
        task = envs.make(args.task)
    except envs.TaskError as err:
        raise UserError(str(err)) from None
    if args.out.suffix != ".npz":
        raise UserError(f"--out must end in .npz, got {str(args.out)!r}")
    traj = collect_rollouts(
        task, args.policy, jax.random.key(args.seed), args.n, args.horizon, args.mode
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_trajectories(args.out, traj, task.id)
    steps = int(traj.valid.sum())
    print(
        f"{args.out}: {traj.n} {args.policy} episodes of {task.id}, {steps} valid states, "
        f"success {float(traj.success.mean()):.1%}"
    )
    return 0
