"""Sample efficiency: env steps to reach 90% success, code reward vs sparse reward.

The paper's claim is that the code reward trains faster than the environment's sparse reward.
For each task this trains PPO with the task's reference reward spec (prompts/reference/) and with
the sparse reward alone, on the same seeds and under one fixed step budget, and reports the
env steps at which the seed-mean success rate first reaches the threshold ("not reached" when it
never does). Results go to benchmarks/results/sample_efficiency.json and one PNG per task.

    python benchmarks/sample_efficiency.py                      # all tasks, 4 seeds
    python benchmarks/sample_efficiency.py --tasks MiniGrid-DoorKey-5x5 --seeds 2 --scale 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import RESULTS, command, machine, write_json  # noqa: E402

import envs  # noqa: E402
from car_jax.experiment import (  # noqa: E402
    LABELS,
    RUN_DEFAULTS,
    curves,
    episode_warmup,
    make_config,
    summarize,
    train_variants,
)
from car_jax.report import json_safe, plot_curves  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# One fixed budget (env steps per seed, parallel envs) per task: car_jax.experiment.RUN_DEFAULTS.
TASKS = (
    "MiniGrid-DoorKey-5x5",
    "MiniGrid-DoorKey-8x8",
    "MiniGrid-DoorKey-16x16",
    "MiniGrid-Unlock",
    "MiniGrid-UnlockPickUp",
    "MountainCar-v0",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="task ids")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every budget (quick runs)")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--mode", default="state")
    p.add_argument("--work-dir", default=None, help="training logs (default: a temporary folder)")
    p.add_argument("--out", default=str(RESULTS / "sample_efficiency.json"))
    p.add_argument("--render", metavar="JSON", help="print the markdown table of a saved run")
    args = p.parse_args()
    if args.render:
        print(render_markdown(json.loads(Path(args.render).read_text())))
        return

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="car-jax-sample-eff-"))
    out_json = Path(args.out)
    rows, per_task = [], {}
    for task_id in args.tasks:
        task = envs.make(task_id)
        spec_path = ROOT / "prompts" / "reference" / f"{task_id}.{args.mode}.py"
        if not spec_path.is_file():
            print(f"skip {task_id}: no reference spec {spec_path.name}", file=sys.stderr)
            continue
        spec = RewardSpec.load(spec_path)
        compiled = compile_spec(spec, task.inputs(args.mode), task.constants(args.mode))
        budget = int(RUN_DEFAULTS.get(task_id, (1_000_000, None))[0] * args.scale)
        config = make_config(task, budget)
        t0 = time.perf_counter()
        results = train_variants(
            task, compiled, args.mode, ("car", "sparse"), config, args.seeds,
            work / task_id, progress=True,
        )  # fmt: skip
        warmup = episode_warmup(task, config)
        summary = summarize(results, compiled.names, args.threshold, warmup=warmup)
        cs = curves(results, warmup_steps=warmup)
        png = out_json.parent / f"sample_efficiency_{task_id}.png"
        plot_curves(cs, png, f"{task_id}: code reward vs sparse ({args.seeds} seeds)")
        key = f"steps_to_{int(args.threshold * 100)}pct"
        per_task[task_id] = {
            "budget_per_seed": config.num_updates * config.batch_size,
            "num_envs": config.num_envs,
            "updates": config.num_updates,
            "spec": spec_path.name,
            "wall_seconds": time.perf_counter() - t0,
            "plot": png.name,
            **summary,
        }
        car, sparse = summary["car"][key], summary["sparse"][key]
        if car == car and sparse == sparse:
            verdict = f"{sparse / car:.1f}x fewer steps with code reward"
        elif car == car:
            verdict = "only the code reward reaches it"
        elif sparse == sparse:
            verdict = "only the sparse reward reaches it"
        else:
            verdict = "neither reaches it"
        rows.append((task_id, per_task[task_id]["budget_per_seed"], summary, key, verdict))
        payload = {
            "benchmark": "sample_efficiency",
            "threshold": args.threshold,
            "seeds": args.seeds,
            "mode": args.mode,
            "tasks": per_task,
            "machine": machine(),
            "command": command(__file__),
        }
        write_json(
            out_json, json_safe(payload)
        )  # written after every task: nothing lost on a crash

    def fmt(x):
        return "not reached" if x != x else f"{x / 1e6:.2f}M"

    print(f"\nEnv steps to {args.threshold:.0%} success (seed mean, {args.seeds} seeds)")
    print(
        f"{'task':<28}{'budget':>9}{'code reward':>14}{'sparse':>14}  final success (code / sparse)"
    )
    for task_id, budget, s, key, verdict in rows:
        print(
            f"{task_id:<28}{budget / 1e6:>8.2f}M{fmt(s['car'][key]):>14}{fmt(s['sparse'][key]):>14}"
            f"  {s['car']['final_success']:.0%} / {s['sparse']['final_success']:.0%}   {verdict}"
        )
    print(f"wrote {out_json} ({', '.join(LABELS.values())})")


def render_markdown(payload: dict) -> str:
    """The README table of a saved run: steps to the threshold and final success per reward."""
    key = f"steps_to_{int(payload['threshold'] * 100)}pct"

    def steps(x):
        return "not reached" if x is None else f"{x / 1e6:.2f}M"

    lines = [
        f"| task | budget per seed (envs x updates) | code reward: steps to {payload['threshold']:.0%} "
        "| sparse: steps to it | final success, code / sparse |",
        "|---|---|---|---|---|",
    ]
    for task_id, t in payload["tasks"].items():
        lines.append(
            f"| {task_id} | {t['budget_per_seed'] / 1e6:.2f}M ({t['num_envs']} x {t['updates']}) "
            f"| {steps(t['car'][key])} | {steps(t['sparse'][key])} "
            f"| {t['car']['final_success']:.0%} / {t['sparse']['final_success']:.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
