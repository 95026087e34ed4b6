"""Scaling curves for sizing sweeps: env steps/s vs parallel envs for every registered task, and PPO
training env-steps/s vs envs and seeds (DoorKey-8x8 with the fused code reward), with a breakdown
of where one PPO update's time goes (env, code reward, network + update).

    .venv/bin/python benchmarks/scaling.py            # full run (~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/scaling.py --quick    # tiny sizes, seconds

Writes benchmarks/results/scaling.json and scaling_envs.png / scaling_ppo.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import envs  # noqa: E402
from benchmarks._bench_util import (  # noqa: E402
    RESULTS,
    block,
    command,
    compile_jit,
    fmt_rate,
    machine,
    rate_stats,
    time_repeats,
    write_json,
)
from benchmarks.jax_rollout import TASK_ID, bench_jax, fused_env, scan_length  # noqa: E402

SLOW_FAMILIES = (
    "brax",
)  # physics sims: minutes to compile on a small CPU; --include-slow runs them


def bench_tasks(
    task_ids: list[str], sizes: list[int], target: int, lo: int, hi: int, repeats: int
) -> dict:
    """Steps/s (env alone, random actions, auto-reset) of every task at every env count."""
    out: dict[str, Any] = {}
    for tid in task_ids:
        task = envs.make(tid)
        rows = []
        for n in sizes:
            r = bench_jax(task, n, scan_length(n, target, lo, hi), repeats, budget_s=4.0)
            rows.append(r)
            print(
                f"  {tid:32s} envs={n:6d} {fmt_rate(r['median']):>8s} steps/s  compile {r['compile_s']:.1f}s",
                flush=True,
            )
        out[tid] = {"family": task.family, "points": rows}
    return out


def ppo_point(
    env: Any, num_envs: int, seeds: int, num_steps: int, updates: int, repeats: int
) -> dict[str, Any]:
    """Env-steps/s of `updates` PPO updates for `seeds` seeds vmapped in one program (compile apart)."""
    from car_jax.rl.config import PPOConfig
    from car_jax.rl.ppo import PPOTrainer

    cfg = PPOConfig.for_family(
        "minigrid",
        num_envs=num_envs,
        num_steps=num_steps,
        num_minibatches=4,
        total_timesteps=num_envs * num_steps * updates,
    )
    trainer = PPOTrainer(cfg, env)
    keys = jax.random.split(jax.random.key(0), seeds)
    runner = block(jax.jit(jax.vmap(trainer.init))(keys))

    def chunk(r):
        return jax.vmap(lambda one: trainer.run(one, updates))(r)

    compiled, compile_s = compile_jit(chunk, runner)
    state = {"r": runner}

    def once():
        state["r"], metrics = compiled(state["r"])
        return metrics

    times = time_repeats(once, repeats, warmup=1)
    out = rate_stats(seeds * updates * num_envs * num_steps, times)
    out.update(
        compile_s=compile_s, num_envs=num_envs, seeds=seeds, num_steps=num_steps, updates=updates
    )
    return out


def profile_chunk(env: Any, num_envs: int, num_steps: int, updates: int, logdir: Path) -> Path:
    """Write a JAX profiler trace (TensorBoard/Perfetto) of one compiled PPO chunk to `logdir`."""
    from car_jax.rl.config import PPOConfig
    from car_jax.rl.ppo import PPOTrainer

    cfg = PPOConfig.for_family(
        "minigrid",
        num_envs=num_envs,
        num_steps=num_steps,
        num_minibatches=4,
        total_timesteps=num_envs * num_steps * updates,
    )
    trainer = PPOTrainer(cfg, env)
    runner = block(jax.jit(trainer.init)(jax.random.key(0)))
    chunk = jax.jit(lambda r: trainer.run(r, updates))
    runner, _ = block(chunk(runner))  # compile outside the trace
    with jax.profiler.trace(str(logdir)), jax.profiler.TraceAnnotation("ppo_chunk"):
        block(chunk(runner))
    return logdir


def breakdown(
    task: Any, env: Any, num_envs: int, num_steps: int, repeats: int, ppo: dict[str, Any]
) -> dict:
    """Where one PPO update's time goes: env, code reward, network + update (by subtraction)."""
    alone = bench_jax(task, num_envs, num_steps, repeats)
    fused = bench_jax(env, num_envs, num_steps, repeats)
    per_update = ppo["seconds_median"] / (ppo["updates"] * ppo["seeds"])
    t_env = alone["seconds_median"]
    t_reward = max(fused["seconds_median"] - t_env, 0.0)
    t_rest = max(per_update - fused["seconds_median"], 0.0)
    total = t_env + t_reward + t_rest
    return {
        "num_envs": num_envs,
        "num_steps": num_steps,
        "seconds_per_update": per_update,
        "env_s": t_env,
        "reward_s": t_reward,
        "network_and_update_s": t_rest,
        "fractions": {
            k: v / total
            for k, v in (("env", t_env), ("reward", t_reward), ("network_and_update", t_rest))
        },
        "method": "env: random-action rollout of the env alone; reward: fused rollout minus env; "
        "network_and_update: PPO update (rollout with policy + GAE + epochs) minus fused rollout",
    }


def plot(payload: dict[str, Any], out_dir: Path) -> list[str]:
    """scaling_envs.png (steps/s vs envs per task) and scaling_ppo.png (PPO env-steps/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = payload["machine"]
    where = f"{m['cpu_model']}, {m['cpu_cores']} cores, jax {m['jax_version']} ({m['backend']})"
    written = []
    fig, ax = plt.subplots(figsize=(9, 4.8))
    colors = plt.get_cmap("tab20").colors
    for i, (tid, data) in enumerate(payload["tasks"].items()):
        pts = data["points"]
        ax.errorbar(
            [p["num_envs"] for p in pts],
            [p["median"] for p in pts],
            yerr=[[p["median"] - p["min"] for p in pts], [p["max"] - p["median"] for p in pts]],
            marker="o",
            ms=3,
            label=tid,
            capsize=2,
            color=colors[i % len(colors)],
            ls="-" if data["family"] == "minigrid" else "--",
        )
    ax.set(
        xscale="log", yscale="log", xlabel="parallel envs", ylabel="env steps / s (random actions)"
    )
    ax.set_title(f"Env throughput vs parallel envs\n{where}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    path = out_dir / "scaling_envs.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(str(path))

    ppo = payload.get("ppo") or {}
    if ppo.get("points"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        by_seeds: dict[int, list] = {}
        for p in ppo["points"]:
            by_seeds.setdefault(p["seeds"], []).append(p)
        for seeds, pts in sorted(by_seeds.items()):
            pts.sort(key=lambda p: p["num_envs"])
            ax.plot(
                [p["num_envs"] for p in pts],
                [p["median"] for p in pts],
                marker="o",
                label=f"{seeds} seed(s)",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="parallel envs per seed",
            ylabel="training env steps / s (all seeds)",
        )
        ax.set_title(f"PPO on {ppo['task']} + fused code reward (state)\n{where}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / "scaling_ppo.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    return written


def main(argv: list[str] | None = None) -> int:
    """Run the scaling sweeps, write JSON and PNGs."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--envs", type=int, nargs="+", default=[1, 16, 256, 4096], help="env counts per task"
    )
    ap.add_argument(
        "--tasks", nargs="+", default=None, help="task ids (default: every registered task)"
    )
    ap.add_argument(
        "--include-slow", action="store_true", help=f"also run slow families {SLOW_FAMILIES}"
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--target-steps", type=int, default=2**18, help="env steps per timed call")
    ap.add_argument(
        "--ppo-envs",
        type=int,
        nargs="+",
        default=[64, 256, 1024],
        help="PPO envs per seed (1 seed)",
    )
    ap.add_argument(
        "--ppo-seeds", type=int, nargs="+", default=[1, 4], help="PPO seeds (at 256 envs)"
    )
    ap.add_argument("--ppo-steps", type=int, default=32, help="PPO rollout length")
    ap.add_argument("--ppo-updates", type=int, default=2, help="PPO updates per timed call")
    ap.add_argument("--no-ppo", action="store_true", help="skip the PPO part")
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    ap.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="only redraw the PNGs of a saved run",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="DIR",
        help="only write a profiler trace of one PPO chunk (DoorKey-8x8 + code reward) to DIR",
    )
    ap.add_argument("--note", default="", help="free text stored in the JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.envs, args.repeats, args.target_steps = [1, 8], 2, 64
        args.ppo_envs, args.ppo_seeds, args.ppo_steps, args.ppo_updates = [8], [1, 2], 8, 1
        if args.tasks is None:
            args.tasks = ["CartPole-v1"]

    if args.render is not None:
        payload = json.loads(args.render.read_text(encoding="utf-8"))
        print("wrote", *plot(payload, args.render.parent))
        return 0
    if args.profile is not None:
        env = fused_env(envs.make(TASK_ID), "state")
        n = args.ppo_envs[len(args.ppo_envs) // 2]
        out = profile_chunk(env, n, args.ppo_steps, args.ppo_updates, args.profile)
        print(f"wrote a profiler trace of {args.ppo_updates} PPO update(s) at {n} envs under {out}")
        return 0

    task_ids = args.tasks or envs.registered()
    skipped = []
    if not args.include_slow and args.tasks is None:
        skipped = [t for t in task_ids if envs.make(t).family in SLOW_FAMILIES]
        task_ids = [t for t in task_ids if t not in skipped]
    lo, hi = (8, 64) if args.quick else (16, 1000)
    tasks = bench_tasks(task_ids, args.envs, args.target_steps, lo, hi, args.repeats)

    ppo: dict[str, Any] = {}
    if not args.no_ppo:
        try:
            import car_jax.rl.ppo  # noqa: F401
        except ImportError as err:  # the RL part may be missing in a partial checkout
            ppo = {"skipped": f"car_jax.rl not importable: {err}"}
        else:
            task = envs.make(TASK_ID)
            env = fused_env(task, "state")
            grid = [(n, 1) for n in args.ppo_envs]
            mid = 256 if 256 in args.ppo_envs else args.ppo_envs[len(args.ppo_envs) // 2]
            grid += [(mid, s) for s in args.ppo_seeds if (mid, s) not in grid]
            points = []
            for n, s in grid:
                p = ppo_point(env, n, s, args.ppo_steps, args.ppo_updates, args.repeats)
                points.append(p)
                print(
                    f"  PPO envs={n:5d} seeds={s}  {fmt_rate(p['median']):>8s} env-steps/s  compile {p['compile_s']:.1f}s",
                    flush=True,
                )
            ref = next(p for p in points if p["num_envs"] == mid and p["seeds"] == 1)
            ppo = {
                "task": TASK_ID,
                "reward": "fused code reward, state mode (reference spec)",
                "network": "PPOConfig.for_family('minigrid') defaults",
                "points": points,
                "breakdown": breakdown(task, env, mid, args.ppo_steps, args.repeats, ref),
            }
            f = ppo["breakdown"]["fractions"]
            print(
                "  one PPO update at {} envs: env {:.0%}, reward {:.0%}, network+update {:.0%}".format(
                    mid, f["env"], f["reward"], f["network_and_update"]
                )
            )

    payload = {
        "benchmark": "scaling",
        "command": command(__file__, argv),
        "quick": args.quick,
        "note": args.note,
        "machine": machine(),
        "method": "env steps/s: jit(scan(vmap(step))) with random actions and auto-reset from a "
        "reset pool drawn once per call (car_jax.rl.resets), "
        "compile apart, median of repeats. PPO: PPOTrainer.run over `updates` updates, seeds vmapped "
        "in one program, env-steps/s summed over seeds.",
        "skipped_slow": skipped,
        "tasks": tasks,
        "ppo": ppo,
    }
    if not args.no_plot:
        payload["plots"] = [str(Path(p).name) for p in plot(payload, args.out.parent)]
    path = write_json(args.out, payload)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
