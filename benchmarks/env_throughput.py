"""Env steps per second vs number of parallel envs, per task, random actions.

Each measurement is one jitted `lax.scan` of `--steps` steps over `vmap`-ed envs (no auto-reset:
finished envs keep stepping their frozen dynamics, which costs the same). With `--observe`, the
program inputs of the `state` mode are computed on every step too (what reward fusion adds).
Compile time is reported apart; steady-state rate is the median over `--repeats` timed calls,
each blocked until ready.

    .venv/bin/python benchmarks/env_throughput.py --tasks CartPole-v1 reacher --envs 1 64 4096
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import (  # noqa: E402
    RESULTS,
    command,
    compile_jit,
    fmt_rate,
    machine,
    rate_stats,
    time_repeats,
    write_json,
)

import envs  # noqa: E402

DEFAULT_TASKS = [
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "CartPole-v1",
    "Acrobot-v1",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "reacher",
]


def make_rollout(task: Any, n: int, steps: int, observe: bool):
    """A function key -> summed reward of `n` envs stepped `steps` times with random actions."""

    def run(key: jax.Array) -> jax.Array:
        k_reset, k_run = jax.random.split(key)
        _, state = jax.vmap(task.reset, in_axes=(0, None))(
            jax.random.split(k_reset, n), task.params
        )

        def body(carry, k):
            state, total = carry
            k_act, k_step = jax.random.split(k)
            actions = task.action.sample(k_act, (n,))
            _, state, reward, _, _, _ = jax.vmap(task.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, n), state, actions, task.params
            )
            total = total + reward.sum()
            if observe:
                obs = jax.vmap(lambda s: task.observe(s, "state"))(state)
                # NOTE: fold the inputs into the carry so XLA cannot drop the observe computation.
                total = total + sum(jnp.sum(v.astype(jnp.float32)) for v in obs.values()) * 0.0
            return (state, total), None

        (_, total), _ = jax.lax.scan(
            body, (state, jnp.float32(0.0)), jax.random.split(k_run, steps)
        )
        return total

    return run


def main(argv: list[str] | None = None) -> int:
    """Measure, print a table, write JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="registered task ids")
    p.add_argument(
        "--envs",
        nargs="+",
        type=int,
        default=[1, 16, 256, 4096],
        help="parallel env counts (1..16384)",
    )
    p.add_argument("--steps", type=int, default=100, help="steps per timed call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per point (median reported)")
    p.add_argument(
        "--observe",
        action="store_true",
        help="also compute the state-mode program inputs each step",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "env_throughput.json")
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    args = p.parse_args(argv)

    rows = []
    print(f"{'task':26s} {'envs':>6s} {'compile s':>10s} {'steps/s':>10s} {'spread':>7s}")
    for task_id in args.tasks:
        task = envs.make(task_id)
        for n in args.envs:
            if not 1 <= n <= 16384:
                raise SystemExit(f"--envs values must be in 1..16384, got {n}")
            key = jax.random.key(0)
            compiled, compile_s = compile_jit(make_rollout(task, n, args.steps, args.observe), key)
            times = time_repeats(lambda c=compiled, k=key: c(k), args.repeats)
            stats = rate_stats(n * args.steps, times)
            rows.append(
                {
                    "task": task_id,
                    "envs": n,
                    "steps": args.steps,
                    "compile_s": compile_s,
                    "steps_per_s": stats,
                }
            )
            print(
                f"{task_id:26s} {n:6d} {compile_s:10.2f} {fmt_rate(stats['median']):>10s} {stats['spread']:7.1%}"
            )

    payload = {
        "benchmark": "env_throughput",
        "command": command(__file__, argv),
        "machine": machine(),
        "note": args.note,
        "settings": {
            "steps": args.steps,
            "repeats": args.repeats,
            "observe": args.observe,
            "policy": "random",
        },
        "results": rows,
    }
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
