"""PPO training throughput: env steps/s vs number of envs and seeds, compile time apart.

Runs compiled chunks of `--updates` PPO updates (rollout + GAE + epochs, `jit(vmap)` over seeds)
on one task from `envs.make`, with the family's default PPO settings (MiniGrid: 64-64 MLP over an
embedded egocentric view, rollout 64, 4 epochs x 8 minibatches), with the sparse env reward and
with the task's reference code reward fused in (`CodeReward`, `prompts/reference/<ID>.state.py`),
measured in the same interleaved rounds at each size: the ratio is the code reward's cost in
training (`--progress-obs` adds the code reward with the sub-task progress in the observation, the
MiniGrid default, its progress plane embedded per cell and once: `embed_constant_once`). Each variant
runs with the reset pool (`reset_mode="pool"`, the default) and, side by side, with a reset of
every env on every step (`reset_mode="step"`, PureJaxRL's way): `ratio_pool_to_step` is the gain.

    .venv/bin/python benchmarks/ppo_throughput.py --env MiniGrid-DoorKey-8x8 --num-envs 256 1024 --seeds 1 2
    .venv/bin/python benchmarks/ppo_throughput.py --env MiniGrid-DoorKey-16x16 --num-envs 128 \
        --seeds 2 --reset-modes pool --progress-obs --eval-episodes 0 \
        --out benchmarks/results/ppo_throughput_progress.json
Writes benchmarks/results/ppo_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import (  # noqa: E402
    RESULTS,
    block,
    command,
    compile_jit,
    fmt_rate,
    machine,
    write_json,
)
from jax_rollout import bench_interleaved, paired_ratio  # noqa: E402


def prepare(
    env: Any,
    family: str,
    num_envs: int,
    seeds: int,
    updates: int,
    reset_mode: str,
    **overrides: Any,
) -> dict[str, Any]:
    """Compile one chunk of `updates` PPO updates (seeds vmapped); its timed call and compile time.

    `overrides`: further PPOConfig fields (e.g. conv_impl).
    """
    from car_jax.rl.config import PPOConfig
    from car_jax.rl.ppo import PPOTrainer

    base = PPOConfig.for_family(family) if family else PPOConfig()
    cfg = base.replace(
        num_envs=num_envs,
        total_timesteps=num_envs * base.num_steps * updates,
        reset_mode=reset_mode,
        **overrides,
    )
    trainer = PPOTrainer(cfg, env)
    keys = jax.random.split(jax.random.key(0), seeds)
    runner = block(trainer.batched_init()(keys, cfg.hyper()))
    compiled, compile_s = compile_jit(jax.vmap(lambda r: trainer.run(r, updates)), runner)
    state = {"runner": runner}

    def once():
        state["runner"], metrics = compiled(state["runner"])
        return metrics

    # bench_interleaved's work per call: num_envs * scan_steps env steps (all seeds together)
    return {
        "once": once,
        "compile_s": compile_s,
        "num_envs": seeds * num_envs,
        "scan_steps": updates * cfg.num_steps,
        "config": cfg.to_dict(),
    }


def measure_size(
    variants: dict[str, tuple[Any, dict[str, Any]]],
    family: str,
    num_envs: int,
    seeds: int,
    updates: int,
    repeats: int,
    modes: list[str],
) -> list[dict[str, Any]]:
    """Steps/s of every (variant, reset mode) at one size, all timed in the same interleaved
    rounds; ratios to the sparse variant and pool/step are medians of per-round ratios."""
    preps = {
        (name, m): prepare(env, family, num_envs, seeds, updates, m, **overrides)
        for name, (env, overrides) in variants.items()
        for m in modes
    }
    timed = bench_interleaved(preps, repeats, budget_s=600.0)
    rows = []
    for (name, mode), r in timed.items():
        r.update(
            reward=name,
            reset_mode=mode,
            num_envs=num_envs,
            seeds=seeds,
            updates_per_chunk=updates,
            config=preps[name, mode]["config"],
        )
        to_sparse = paired_ratio(r, timed["sparse", mode])
        r["ratio_to_sparse"] = to_sparse["median"]
        r["ratio_to_sparse_range"] = [to_sparse["min"], to_sparse["max"]]
        if name == "progress_once" and ("progress_per_cell", mode) in timed:
            once = paired_ratio(r, timed["progress_per_cell", mode])
            r["ratio_to_per_cell"] = once["median"]
            r["ratio_to_per_cell_range"] = [once["min"], once["max"]]
        if mode == "pool" and (name, "step") in timed:
            pr = paired_ratio(r, timed[name, "step"])
            r["ratio_pool_to_step"] = pr["median"]
            r["ratio_pool_to_step_range"] = [pr["min"], pr["max"]]
        rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, measure every (num_envs, seeds) pair, print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MiniGrid-DoorKey-8x8", help="task id for envs.make")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--updates", type=int, default=4, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-code-reward", action="store_true", help="sparse reward only")
    parser.add_argument(
        "--reset-modes",
        nargs="+",
        default=["pool", "step"],
        choices=["pool", "step"],
        help="auto-reset modes measured side by side",
    )
    parser.add_argument(
        "--progress-obs",
        action="store_true",
        help="also the code reward with the sub-task progress in the observation (the MiniGrid "
        "default), its progress plane embedded per cell and once (embed_constant_once)",
    )
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        help="evaluation episodes per policy (default: the family's; 0 times training alone)",
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--out", type=Path, default=RESULTS / "ppo_throughput.json")
    args = parser.parse_args(argv)

    import envs
    from car_jax.reward import CodeReward
    from car_jax.spec import RewardSpec, compile_spec

    task = envs.make(args.env)
    common = {} if args.eval_episodes is None else {"eval_episodes": args.eval_episodes}
    # name -> (env, PPOConfig overrides)
    variants: dict[str, tuple[Any, dict[str, Any]]] = {"sparse": (task, common)}
    if not args.no_code_reward or args.progress_obs:
        spec_path = (
            Path(__file__).resolve().parents[1] / "prompts" / "reference" / f"{args.env}.state.py"
        )
        spec = RewardSpec.load(spec_path)
        compiled = compile_spec(spec, task.inputs("state"), task.constants("state"))
        variants["code_reward"] = (CodeReward(task, compiled, mode="state"), common)
    if args.progress_obs:
        shown = CodeReward(task, compiled, mode="state", progress_obs=True)
        for name, once in (("progress_per_cell", False), ("progress_once", True)):
            variants[name] = (shown, {**common, "embed_constant_once": once})
    rows = []
    print(
        f"{'envs':>6} {'seeds':>5} {'reward':>17} {'resets':>6} {'steps/s':>10} {'spread':>7} "
        f"{'compile s':>9} {'/sparse':>7} {'pool/step':>9}"
    )
    for n in args.num_envs:
        for s in args.seeds:
            for row in measure_size(
                variants, task.family, n, s, args.updates, args.repeats, args.reset_modes
            ):
                rows.append(row)
                gain = row.get("ratio_pool_to_step")
                print(
                    f"{n:>6} {s:>5} {row['reward']:>17} {row['reset_mode']:>6} "
                    f"{fmt_rate(row['median']):>10} {row['spread']:>7.2f} "
                    f"{row['compile_s']:>9.1f} {row['ratio_to_sparse']:>7.2f} "
                    f"{'' if gain is None else f'{gain:.2f}':>9}",
                    flush=True,
                )
    write_json(
        args.out,
        {
            "benchmark": "ppo_throughput",
            "env": args.env,
            "command": command(__file__, argv),
            "machine": machine(),
            "note": args.note,
            "unit": "env steps per second, all seeds together, steady state",
            "method": "each row: one compiled chunk of `updates_per_chunk` PPO updates, one warm-up "
            "call, then `repeats` interleaved rounds timing every reward variant and reset mode "
            "of one size in turn at equal settings (compile_s apart); ratio_to_sparse and "
            "ratio_pool_to_step (and progress_once's ratio_to_per_cell) are medians of per-round "
            "ratios",
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
