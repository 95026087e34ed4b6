"""Sample efficiency: code reward vs sparse reward, judged by evaluation on fresh episodes.

The paper's claim is that the code reward trains faster than the environment's sparse reward.
For each task this trains PPO with the task's reference reward spec (prompts/reference/) and with
the sparse reward alone, on the same seeds and under one fixed step budget, and evaluates every
`eval_every` updates on fresh episodes (greedy policy, ground-truth success). It reports per
reward the final greedy success (IQM over seeds, 95% stratified-bootstrap CI, and per seed) and
the env steps from which success stays >= the threshold to the end of the run (per seed; the
seed median and how many seeds got there). Results go to benchmarks/results/<out>.json (written
after every task) and two PNGs per task: eval success, and the env's own eval return (which
shows progress where success stays at 0).

    python benchmarks/sample_efficiency.py --tasks MiniGrid-DoorKey-5x5 CartPole-v1 --seeds 5
    python benchmarks/sample_efficiency.py --render benchmarks/results/sample_efficiency.json
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
from car_jax.errors import UserError  # noqa: E402
from car_jax.experiment import (  # noqa: E402
    LABELS,
    default_carried_obs,
    default_progress_obs,
    make_config,
    plot_curves_of,
    summarize,
    train_variants,
)
from car_jax.report import json_safe  # noqa: E402
from car_jax.rl.config import parse_overrides  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402
from car_jax.sprite_inputs import task_sprite_frames  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Every task with a reference spec; the budget per task is car_jax.experiment.RUN_DEFAULTS (or
# the family default), the same that `car-jax run` uses.
TASKS = (
    "MiniGrid-DoorKey-5x5",
    "MiniGrid-DoorKey-6x6",
    "MiniGrid-DoorKey-8x8",
    "MiniGrid-DoorKey-16x16",
    "MiniGrid-Unlock",
    "MiniGrid-UnlockPickUp",
    "MiniGrid-BlockedUnlockPickUp",
    "MiniGrid-Empty-8x8",
    "CartPole-v1",
    "MountainCar-v0",
    "Acrobot-v1",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "reacher",
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help="task ids")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--scale", type=float, default=1.0, help="multiply every budget (quick runs)")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--mode", default="state")
    p.add_argument("--bonus", type=float, default=0.5)
    p.add_argument("--shaping", default="bonus", choices=("bonus", "potential"))
    p.add_argument(
        "--progress-obs", action=argparse.BooleanOptionalAction, default=None,
        help="the code reward's sub-task progress in the policy's obs (default: the family's)",
    )  # fmt: skip
    p.add_argument(
        "--carried-obs", action=argparse.BooleanOptionalAction, default=None,
        help="the carried object in both rewards' obs (default: the family's)",
    )  # fmt: skip
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--num-envs", type=int, default=None, help="override the task's env count")
    p.add_argument("--steps", type=int, default=None, help="override the budget per seed")
    p.add_argument("--rewards", nargs="+", default=["car", "sparse"], choices=("car", "sparse"))
    p.add_argument("--ent-coef", type=float, default=None, help="override the entropy weight")
    p.add_argument("--ppo", action="append", default=None, metavar="KEY=VALUE",
                   help="override any PPOConfig field, e.g. --ppo gamma=0.999 (repeatable)")  # fmt: skip
    p.add_argument("--work-dir", default=None, help="training logs (default: a temporary folder)")
    p.add_argument(
        "--resume", action="store_true",
        help="reuse the training logs in --work-dir: a reward's finished run there is read back "
        "(its figures and times as recorded), an unfinished one continues from its checkpoint, "
        "a missing one trains; its settings must match, else it is refused by name",
    )  # fmt: skip
    p.add_argument("--out", default=str(RESULTS / "sample_efficiency.json"))
    p.add_argument("--note", default="", help="free text stored in the JSON (e.g. machine load)")
    p.add_argument("--render", metavar="JSON", help="print the markdown table of a saved run")
    p.add_argument(
        "--merge", nargs="+", metavar="JSON",
        help="combine saved runs into --out (per task, the later file wins; each task keeps the "
        "command and settings that measured it); trains nothing",
    )  # fmt: skip
    args = p.parse_args()
    if args.render:
        print(render_markdown(json.loads(Path(args.render).read_text())))
        return
    if args.merge:
        merged = merge_runs([json.loads(Path(f).read_text()) for f in args.merge], args.note)
        write_json(Path(args.out), json_safe(merged))
        print(render_markdown(merged))
        print(f"wrote {args.out} ({len(merged['tasks'])} tasks from {len(args.merge)} runs)")
        return

    try:  # every task's PPO settings first: a bad flag is refused before anything trains
        overrides = parse_overrides(args.ppo)
        configs = {t: task_config(envs.make(t), args, overrides) for t in args.tasks}
    except UserError as e:
        raise SystemExit(f"sample_efficiency: {e}") from None
    if args.resume and not args.work_dir:
        raise SystemExit("sample_efficiency: --resume needs the --work-dir of the run to reuse")
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="car-jax-sample-eff-"))
    out_json = Path(args.out)
    per_task, not_run = {}, []
    key = f"steps_to_{int(round(args.threshold * 100))}pct"
    for task_id in args.tasks:
        task = envs.make(task_id)
        spec_path = ROOT / "prompts" / "reference" / f"{task_id}.{args.mode}.py"
        if not spec_path.is_file():
            print(f"skip {task_id}: no reference spec {spec_path.name}", file=sys.stderr)
            not_run.append(task_id)
            continue
        spec = RewardSpec.load(spec_path)
        compiled = compile_spec(
            spec, task.inputs(args.mode), task.constants(args.mode),
            sprite_frames=task_sprite_frames(task, args.mode),  # pixel specs read cell ids
        )  # fmt: skip
        progress_obs = default_progress_obs(task, args.progress_obs)
        carried_obs = default_carried_obs(task, args.carried_obs)
        config = configs[task_id]
        t0 = time.perf_counter()
        results = {}
        for reward in args.rewards:  # NOTE: one folder per reward: a resume reuses each that exists
            try:
                results.update(train_variants(
                    task, compiled, args.mode, (reward,), config, args.seeds, work / task_id,
                    resume=args.resume and (work / task_id / reward / "run.json").is_file(),
                    bonus=args.bonus, shaping=args.shaping, progress=True,
                    progress_obs=progress_obs, carried_obs=carried_obs,
                ))  # fmt: skip
            except UserError as e:  # the tasks done so far are in --out already
                raise SystemExit(f"sample_efficiency: {task_id} {reward}: {e}") from None
        summary = summarize(results, compiled.names, args.threshold)
        png = out_json.parent / f"{out_json.stem}_{task_id}.png"
        plot_curves_of(results, png, f"{task_id}: code reward vs sparse ({args.seeds} seeds)")
        # Success can stay at 0 while the return climbs (Breakout's bricks): plot that too.
        png_return = png.with_name(f"{png.stem}_return.png")
        plot_curves_of(results, png_return, f"{task_id}: env return ({args.seeds} seeds)", "return")
        per_task[task_id] = {
            "budget_per_seed": config.num_updates * config.batch_size,
            "num_envs": config.num_envs,
            "num_steps": config.num_steps,
            "updates": config.num_updates,
            "eval_interval_updates": config.eval_interval,
            "eval_episodes_per_policy": config.eval_episodes,
            "spec": spec_path.name,
            "seeds": args.seeds,
            "shaping": args.shaping,
            "bonus": args.bonus,
            "progress_obs": progress_obs,
            "carried_obs": carried_obs,
            "ent_coef": config.ent_coef,
            "ppo_overrides": overrides,  # --ppo: set on top of the task's defaults
            "ppo_config": config.to_dict(),
            "command": command(__file__),
            "wall_seconds": time.perf_counter() - t0,
            "plot": png.name,
            "plot_return": png_return.name,
            **summary,
        }
        payload = {
            "benchmark": "sample_efficiency",
            "protocol": (
                f"PPO, {args.seeds} seeds per reward (vmapped), reward spec prompts/reference/"
                f"<task>.{args.mode}.py, {args.shaping} shaping, bonus {args.bonus}"
                " (the code reward's progress observation and both rewards' carried-object view: "
                "per task, tasks[<id>].progress_obs and .carried_obs). "
                "Every eval_interval "
                "updates and after the last: eval_episodes fresh episodes per policy (greedy = "
                "argmax, stochastic = sampled) from their own resets, scored by the task's "
                "ground-truth success. final_success = IQM over seeds of the last evaluation's "
                "greedy success, with a 95% stratified-bootstrap CI; steps_to = per seed the first "
                "evaluation from which greedy success stays >= threshold to the end; the summary "
                "value is the seed median (null unless at least half the seeds got there)."
            ),
            "threshold": args.threshold,
            "seeds": args.seeds,
            "mode": args.mode,
            "shaping": args.shaping,
            "bonus": args.bonus,
            "rewards": args.rewards,
            "ppo_config": config.to_dict(),
            "tasks": per_task,
            "not_run": not_run,
            "note": args.note or "measured on a shared 2-core CPU, other jobs running",
            "machine": machine(),
            "command": command(__file__),
        }
        write_json(out_json, json_safe(payload))  # after every task: nothing lost on a crash
        print(_row(task_id, per_task[task_id], key), flush=True)
    print(f"wrote {out_json} ({', '.join(LABELS[r] for r in args.rewards)})")


def task_config(task, args, overrides: dict):
    """The PPO config of one task: its run defaults, `--ppo` (parsed), the flags, the budget scaled."""
    ppo = dict(overrides)
    base = make_config(task, args.steps, ppo, num_envs=args.num_envs)
    budget = max(base.batch_size, int(base.total_timesteps * args.scale))
    ppo.pop("total_timesteps", None)  # in `budget` now
    return make_config(task, budget, ppo, num_envs=args.num_envs, ent_coef=args.ent_coef,
                       eval_episodes=args.eval_episodes)  # fmt: skip


# Settings a merged file keeps per task (they may differ between the runs merged).
PER_TASK = ("seeds", "mode", "shaping", "bonus", "progress_obs")


def merge_runs(runs: list[dict], note: str = "") -> dict:
    """One payload from several saved runs: every task with the settings and command of its run."""
    if not runs:
        raise SystemExit("--merge needs at least one JSON file")
    tasks: dict[str, dict] = {}
    not_run: list[str] = []
    for run in runs:
        if run.get("benchmark") != "sample_efficiency":
            raise SystemExit(f"--merge: not a sample_efficiency result: {run.get('benchmark')!r}")
        for task_id, t in run["tasks"].items():
            filled = {k: run[k] for k in PER_TASK if k in run}
            filled.update(t)
            filled.setdefault("command", run.get("command"))
            filled.setdefault("machine", run.get("machine"))
            filled.setdefault("note", run.get("note"))
            tasks[task_id] = filled
        not_run += run.get("not_run", [])
    order = {t: i for i, t in enumerate(TASKS)}
    tasks = dict(sorted(tasks.items(), key=lambda kv: order.get(kv[0], len(order))))
    last = runs[-1]
    return {
        **{k: last[k] for k in ("benchmark", "protocol", "threshold", "rewards") if k in last},
        "protocol_settings": "seeds, mode, shaping, bonus, progress_obs, env counts and the "
        "command are per task (tasks[<id>]), as each was measured",
        "tasks": tasks,
        "not_run": sorted(set(not_run) - set(tasks)),
        "note": note or "merged from separate runs; each task's own note and machine apply",
        "merged_from": len(runs),
    }


def _steps(x) -> str:
    return "not reached" if x is None or x != x else f"{x / 1e6:.2f}M"


def _row(task_id: str, t: dict, key: str) -> str:
    """One console line per task."""
    parts = [f"{task_id:<28} budget {t['budget_per_seed'] / 1e6:.2f}M"]
    for reward in ("car", "sparse"):
        if reward in t:
            s = t[reward]
            parts.append(
                f"{reward}: greedy success {s['final_success']:.0%} (per seed "
                + " ".join(f"{x:.0%}" for x in s["final_success_per_seed"])
                + f"), steps to threshold {_steps(s[key])}"
            )
    return "  ".join(parts)


def render_markdown(payload: dict) -> str:
    """The README table of a saved run: final greedy success with its CI and steps to threshold."""
    pct = int(round(payload["threshold"] * 100))
    key = f"steps_to_{pct}pct"

    def success(s):
        if s is None:
            return "not run"
        low, high = s["final_success_ci95"]
        return f"{s['final_success']:.0%} [{low:.0%}, {high:.0%}]"

    def stochastic(s):
        x = None if s is None else s.get("final_eval_stochastic_success")
        return "n/a" if x is None else f"{x:.0%}"

    def reached(s):
        if s is None:
            return "not run"
        return f"{_steps(s[key])} ({s[f'seeds_reaching_{pct}pct']}/{len(s['seeds'])})"

    lines = [
        f"| task | budget per seed (envs x steps x updates) | final greedy success, code "
        f"| sparse | steps to sustained {pct}%, code (seeds) | sparse (seeds) "
        "| final stochastic success, code / sparse |",
        "|---|---|---|---|---|---|---|",
    ]
    for task_id, t in payload["tasks"].items():
        car, sparse = t.get("car"), t.get("sparse")  # a reward not trained shows "not run"
        lines.append(
            f"| {task_id} | {t['budget_per_seed'] / 1e6:.2f}M ({t['num_envs']} x "
            f"{t['num_steps']} x {t['updates']}) | {success(car)} | {success(sparse)} "
            f"| {reached(car)} | {reached(sparse)} "
            f"| {stochastic(car)} / {stochastic(sparse)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
