"""`car-jax search`: reward search; K VLM candidates per iteration, trained side by side, ranked."""

from __future__ import annotations

import sys
from pathlib import Path

from car_jax.commands._common import load_task, out_dir, resolve_mode
from car_jax.commands.train import add_training_arguments, training_config
from car_jax.verify import DEFAULT_N
from car_jax.vlm.select import add_vlm_arguments

NAME = "search"
HELP = (
    "Reward search: each iteration asks the VLM for K candidate specs, verifies them, trains the "
    "accepted ones side by side in one program, ranks them and reflects (see docs/search.md)."
)


# `--reward` of search: the sparse baseline is never a candidate, only a reference beside them.
SEARCH_REWARDS = {
    "car": "train the candidates (env reward + code reward)",
    "both": "also train the sparse baseline (env reward only) in every iteration's program",
}


def add_arguments(p) -> None:
    p.add_argument("task", metavar="ID", help="task id (see `car-jax envs`)")
    p.add_argument("--candidates", "-k", type=int, default=4, help="candidates per iteration (4)")
    p.add_argument("--iterations", "-r", type=int, default=2, help="iterations (2)")
    p.add_argument("--mode", default=None, help="program input mode (default: the task's first)")
    p.add_argument("--out", default=None, help="run directory (default runs/search-<ID>-<time>)")
    add_training_arguments(p, SEARCH_REWARDS, default_reward="car")
    add_vlm_arguments(p, search=True)
    v = p.add_argument_group("verification")
    v.add_argument("-n", type=int, default=DEFAULT_N,
                   help=f"expert, random and near-miss rollouts each ({DEFAULT_N})")  # fmt: skip
    v.add_argument("--seed", type=int, default=0, help="seed of the images and the rollouts")


def make_train_fn(args, task, mode):
    """`(compiled, names, out) -> {name: (summary entry, metrics)}` for `car_jax.search.search`."""
    from car_jax.commands.train import train_several_and_report

    def train_fn(compiled, names, out: Path) -> dict:
        names, compiled = list(names), list(compiled)
        if args.reward == "both":
            names, compiled = [*names, "sparse"], [*compiled, compiled[0]]
        title = f"{task.id} ({mode} mode): {out.parent.name}, {len(names)} rewards side by side"
        done = train_several_and_report(args, task, mode, compiled, names, out, title)
        results = done["result"].results
        return {n: (done["summary"][n], results[n].metrics) for n in names if n != "sparse"}

    return train_fn


def run(args) -> int:
    from car_jax.search import search
    from car_jax.verify import Verifier
    from car_jax.vlm.images import task_images
    from car_jax.vlm.prompts import PROMPTS_DIR
    from car_jax.vlm.select import choose_backend, make_cache

    task = load_task(args.task)
    mode = resolve_mode(task, args.mode)
    training_config(args, task)  # bad training flags are refused before the first VLM request
    if not args.vlm_replay_dir:  # offline: the shipped search scripts (K differing candidates)
        args.vlm_replay_dir = [str(PROMPTS_DIR / "replay" / "search")]
    backend, note = choose_backend(args)
    if note:
        print(note, file=sys.stderr)
    run_dir = out_dir(args, f"search-{task.id}")
    train_fn = make_train_fn(args, task, mode)
    # Resuming a partly trained iteration continues its checkpoints.
    result = search(
        task, mode, backend, Verifier(task, mode, n=args.n, seed=args.seed), train_fn,
        candidates=args.candidates, iterations=args.iterations, run_dir=run_dir,
        cache=make_cache(args), resume=args.resume, prompt_dir=args.prompt_dir,
        images=task_images(task, args.seed),
        progress=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print((run_dir / "leaderboard.md").read_text())
    print(
        f"VLM requests: {result.calls} to the backend, {result.cache_hits} from the cache; "
        f"wrote {run_dir}"
    )
    return 0 if result.best is not None else 1
