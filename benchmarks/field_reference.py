"""Our runs' final returns beside the returns the field publishes for the same gymnax tasks.

gymnax lists, per environment, the return of a PPO checkpoint trained with gymnax-blines (its
README's "Ckpt (Return)" column). gymnax-blines scores a checkpoint by the mean return of the
*sampled* policy over 164 fresh episodes; our evaluation logs both the sampled (stochastic) and
the greedy policy's mean return over fresh episodes, per seed. This script reads saved
`sample_efficiency.py` results (the per-seed figures from the JSON, or else from the run's
metrics.jsonl under the `--work-dir` its command names) and writes one table.

    python benchmarks/field_reference.py RESULT.json [RESULT.json ...] --out results/x.json

A later file wins for a (task, reward, budget) that several files hold. `--base` starts from the
rows of an earlier output of this script (for result files whose training logs are gone), and
the result files given add rows or replace those rows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_util import RESULTS, command, machine, write_json  # noqa: E402

from car_jax.rl.metric_logs import read_rows  # noqa: E402

# Task -> (return, training budget in env steps, what it is). From gymnax's README ("Ckpt
# (Return)" column, gymnax 1.0.1) and gymnax-blines' agents/<task>/ppo.yaml (num_train_steps).
PUBLISHED = {
    "CartPole-v1": (500.0, 150_000, "gymnax PPO checkpoint (gymnax-blines)"),
    "Acrobot-v1": (-80.0, 500_000, "gymnax PPO checkpoint (gymnax-blines)"),
    "MountainCar-v0": (-118.0, 500_000, "gymnax PPO checkpoint (gymnax-blines)"),
    "Breakout-MinAtar": (28.0, 10_000_000, "gymnax PPO checkpoint (gymnax-blines)"),
    "Freeway-MinAtar": (58.0, 10_000_000, "gymnax PPO checkpoint (gymnax-blines)"),
}
SOURCE = (
    "gymnax README, table 'Implemented Accelerated Environments', column 'Ckpt (Return)' "
    "(gymnax 1.0.1); budgets from gymnax-blines agents/<task>/ppo.yaml num_train_steps; "
    "gymnax-blines evaluates the sampled policy, mean return over 164 episodes"
)


def _from_metrics(path: Path) -> dict[str, list[float]]:
    """Per seed, the greedy and stochastic return of the last evaluation in a metrics.jsonl."""
    last: dict[int, dict] = {}
    for row in read_rows(path, max_update=sys.maxsize):  # skips a line cut short by a crash
        if row.get("eval_greedy_return") is None:
            continue
        if row["seed"] not in last or row["update"] > last[row["seed"]]["update"]:
            last[row["seed"]] = row
    seeds = sorted(last)
    return {
        "greedy": [float(last[s]["eval_greedy_return"]) for s in seeds],
        "stochastic": [float(last[s]["eval_stochastic_return"]) for s in seeds],
    }


def _work_dir(cmd: str) -> Path | None:
    args = shlex.split(cmd)
    return Path(args[args.index("--work-dir") + 1]) if "--work-dir" in args else None


def per_seed_returns(task: str, entry: dict, reward: str, cmd: str) -> dict[str, list[float]]:
    """Final greedy and stochastic returns per seed of one reward of one task of a result file."""
    res = entry[reward]
    if "final_eval_stochastic_return_per_seed" in res:
        return {
            "greedy": res["final_eval_greedy_return_per_seed"],
            "stochastic": res["final_eval_stochastic_return_per_seed"],
        }
    work = _work_dir(cmd)
    metrics = work / task / reward / "metrics.jsonl" if work else None
    if metrics is None or not metrics.is_file():
        raise SystemExit(
            f"field_reference: {task} ({reward}): the result file has no per-seed returns and "
            f"its training log is gone ({metrics or 'no --work-dir in its command'}); rerun it "
            "with this version of sample_efficiency.py"
        )
    return _from_metrics(metrics)


def default_budget(task: str) -> int:
    """The env steps per seed `car-jax run` trains `task` for by default."""
    import envs
    from car_jax.experiment import make_config

    return make_config(envs.make(task)).total_timesteps


def compare(
    results: list[tuple[str, dict]], cut: bool = False, base: list[dict] = ()
) -> list[dict]:
    """One row per (task, reward, budget) with a published return: ours per seed beside it.

    Runs cut below the task's run-default budget are left out unless `cut`. `base`: rows of an
    earlier output, kept in their order unless a result file holds the same (task, reward,
    budget).
    """
    rows: dict[tuple[str, str, int], dict] = {
        (r["task"], r["reward"], r["budget_per_seed"]): r for r in base
    }
    for name, payload in results:
        for task, entry in payload["tasks"].items():
            if task not in PUBLISHED:
                continue
            default = default_budget(task)
            if not cut and entry["budget_per_seed"] < 0.95 * default:
                print(f"left out: {task} from {name}, {entry['budget_per_seed'] / 1e6:.2f}M "
                      f"steps per seed, below its default {default / 1e6:g}M")  # fmt: skip
                continue
            ref, ref_budget, what = PUBLISHED[task]
            for reward in ("car", "sparse"):
                if reward not in entry:
                    continue
                ours = per_seed_returns(task, entry, reward, entry.get("command", ""))
                stoch = np.asarray(ours["stochastic"], float)
                rows[task, reward, entry["budget_per_seed"]] = {
                    "task": task,
                    "reward": reward,
                    "published_return": ref,
                    "published_budget": ref_budget,
                    "published": what,
                    "budget_per_seed": entry["budget_per_seed"],
                    "seeds": len(stoch),
                    "greedy_return_per_seed": [round(x, 2) for x in ours["greedy"]],
                    "stochastic_return_per_seed": [round(x, 2) for x in ours["stochastic"]],
                    "seeds_at_or_above_published_stochastic": int(np.sum(stoch >= ref)),
                    "final_greedy_success_per_seed": entry[reward]["final_success_per_seed"],
                    "from": name,
                }
    return list(rows.values())


def render(rows: list[dict]) -> str:
    out = [
        "| task | reward | published return (budget) | our budget | stochastic return per seed "
        "| greedy return per seed | seeds >= published (stochastic) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fmt = lambda xs: ", ".join(f"{x:g}" for x in np.round(xs, 1))  # noqa: E731
        out.append(
            f"| {r['task']} | {'code' if r['reward'] == 'car' else 'sparse'} "
            f"| {r['published_return']:g} ({r['published_budget'] / 1e6:g}M) "
            f"| {r['budget_per_seed'] / 1e6:.2f}M | {fmt(r['stochastic_return_per_seed'])} "
            f"| {fmt(r['greedy_return_per_seed'])} "
            f"| {r['seeds_at_or_above_published_stochastic']}/{r['seeds']} |"
        )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", help="sample_efficiency.py result JSON files")
    p.add_argument("--out", default=str(RESULTS / "field_reference.json"))
    p.add_argument("--note", default="")
    p.add_argument("--cut", action="store_true", help="keep runs below the run-default budget")
    p.add_argument(
        "--base",
        metavar="JSON",
        help="an earlier output of this script: start from its rows (the result files win)",
    )
    args = p.parse_args()
    base = []
    if args.base:
        try:
            base = json.loads(Path(args.base).read_text())["rows"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise SystemExit(
                f"field_reference: --base {args.base} is not an output of this script "
                f"(a JSON object with 'rows'): {e!r}"
            ) from None
    loaded = []
    for f in args.results:
        try:
            loaded.append((Path(f).name, json.loads(Path(f).read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"field_reference: cannot read {f}: {e}") from None
    rows = compare(loaded, cut=args.cut, base=base)
    if not rows:
        raise SystemExit(
            f"field_reference: none of the files holds a task with a published return "
            f"({', '.join(PUBLISHED)})"
        )
    print(render(rows))
    write_json(
        Path(args.out),
        {
            "benchmark": "field_reference",
            "source": SOURCE,
            "our_protocol": "last evaluation of each seed: mean env return over the run's fresh "
            "evaluation episodes (32 per policy unless the result file says otherwise), for the "
            "sampled (stochastic) and the greedy policy",
            "rows": rows,
            "note": args.note,
            "machine": machine(),
            "command": command(__file__),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
