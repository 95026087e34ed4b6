"""`car-jax generate`: a VLM turns images of the initial and goal states into verified programs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from car_jax.commands._common import load_task, resolve_mode
from car_jax.verify import DEFAULT_N
from car_jax.vlm.select import add_vlm_arguments

NAME = "generate"
HELP = (
    "Ask a VLM for reward programs from two images, verify them, feed failures back "
    "(exit 0 verified, 1 not verified after the last round, 2 bad input, 3 backend failure)."
)


def add_arguments(p) -> None:
    p.add_argument("env", metavar="ID", help="task id (see `car-jax envs`)")
    p.add_argument("--mode", default=None, help="program input mode (default: the task's first)")
    p.add_argument(
        "--out", default=None, help="run folder (default runs/<ID>/generate-<mode>-<time>)"
    )
    add_vlm_arguments(p)
    v = p.add_argument_group("verification")
    v.add_argument("-n", type=int, default=DEFAULT_N,
                   help=f"expert, random and near-miss rollouts each ({DEFAULT_N})")  # fmt: skip
    v.add_argument("--horizon", type=int, default=None, help="steps per rollout (task limit)")
    v.add_argument("--seed", type=int, default=0, help="seed of the images and the rollouts")


def run(args) -> int:
    from car_jax.verify import Verifier
    from car_jax.vlm.loop import generate_spec
    from car_jax.vlm.select import choose_backend, make_cache

    task = load_task(args.env)
    mode = resolve_mode(task, args.mode)
    backend, note = choose_backend(args)
    if note:
        print(note, file=sys.stderr)
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / task.id / (f"generate-{mode}-{time.strftime('%Y%m%d-%H%M%S')}")
    )
    result = generate_spec(
        task,
        mode,
        backend,
        Verifier(task, mode, n=args.n, horizon=args.horizon, seed=args.seed),
        rounds=args.rounds,
        run_dir=out,
        cache=make_cache(args),
        seed=args.seed,
        prompt_dir=args.prompt_dir,
        progress=lambda line: print(line, file=sys.stderr),
    )
    if result.verdict is not None:
        print(result.verdict.to_markdown())
    print(result.summary())
    if result.spec is not None:
        state = "verified" if result.passed else "best failing"
        print(f"{state} spec: {out / 'spec.py'}")
    return result.exit_code
