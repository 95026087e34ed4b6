"""`car-jax verify`: check a reward spec on expert and random trajectories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from car_jax.commands._common import compile_for, load_spec, load_task, resolve_mode
from car_jax.verify import DEFAULT_N

NAME = "verify"
HELP = (
    "Verify a reward spec on expert, random and near-miss trajectories "
    "(exit 0 accepted, 1 rejected, 2 bad input)."
)


def add_arguments(p) -> None:
    p.add_argument("spec", help="reward spec file (DSL source)")
    p.add_argument("--env", required=True, help="task id (see `car-jax envs`)")
    p.add_argument("--mode", default=None, help="program input mode (default: the task's first)")
    p.add_argument("--expert-trajectories", metavar="F.npz", help="expert trajectories file")
    p.add_argument("--random-trajectories", metavar="F.npz", help="random trajectories file")
    p.add_argument(
        "-n",
        type=int,
        default=DEFAULT_N,
        help=f"trajectories to collect per policy (default {DEFAULT_N})",
    )
    p.add_argument(
        "--horizon",
        type=int,
        default=None,
        help="steps per expert trajectory (default: a whole episode; random runs last as long as the longest expert episode)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-near-miss",
        action="store_true",
        help="do not collect epsilon-expert near-miss runs (faster; weaker whole-task check)",
    )
    p.add_argument("--json", metavar="OUT", help="write the verdict as JSON here")


def collect_pair(task, mode, n, horizon, seed, expert_file=None, random_file=None, near_miss=True):
    """Expert, random and epsilon-expert Trajectories, from files where given, else collected."""
    from car_jax.rollout import load_trajectories
    from car_jax.verify import collect_verification_rollouts

    expert = load_trajectories(expert_file, task, mode) if expert_file else None
    random = load_trajectories(random_file, task, mode) if random_file else None
    return collect_verification_rollouts(
        task, mode, n, seed, horizon, expert=expert, random=random, near_miss=near_miss
    )


def run(args) -> int:
    from car_jax.verify import verify_spec

    task = load_task(args.env)
    mode = resolve_mode(task, args.mode)
    spec = load_spec(args.spec)
    compiled = compile_for(spec, task, mode)
    expert, random, epsilon = collect_pair(
        task,
        mode,
        args.n,
        args.horizon,
        args.seed,
        args.expert_trajectories,
        args.random_trajectories,
        near_miss=not args.no_near_miss,
    )
    from_files = bool(args.expert_trajectories or args.random_trajectories)
    verdict = verify_spec(
        compiled,
        task,
        expert,
        random,
        epsilon=epsilon,
        rollout_set="given" if from_files else "collected",
        seed=None if from_files else args.seed,
    )
    for note in verdict.notes + [f"skipped: {s}" for s in verdict.whole_task.skipped]:
        print(f"warning: {note}", file=sys.stderr)
    print(verdict.to_markdown())
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(verdict.to_dict(), indent=2))
    return 0 if verdict.passed else 1
