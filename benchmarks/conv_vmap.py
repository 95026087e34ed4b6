"""The CNN torso's convolution under vmap over seeds: `nn.Conv` ("lax") vs one matmul over 3x3
patches ("patches", the default), in whole PPO updates.

On a CPU, XLA turns a convolution whose kernel is batched by `vmap` (one kernel per seed) into a
grouped convolution, which runs far slower than the seeds one after another; the patch form is a
batched matmul. For each seed count, one compiled chunk of `--updates` PPO updates (rollout + GAE
+ epochs, the family's defaults, sparse reward, reset pool) per implementation, timed in
interleaved rounds; `patches/lax` is the median of per-round ratios, and `time vs 1 seed` is the
time of one update of all seeds over that of one seed, same implementation: equal to the seed count
when vmapping costs what running the seeds one after another would, below it when it saves time.

    .venv/bin/python benchmarks/conv_vmap.py --env Breakout-MinAtar --seeds 1 5
Writes benchmarks/results/conv_vmap.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import RESULTS, command, fmt_rate, machine, write_json  # noqa: E402
from jax_rollout import bench_interleaved, paired_ratio  # noqa: E402
from ppo_throughput import prepare  # noqa: E402

IMPLS = ("patches", "lax")


def main(argv: list[str] | None = None) -> int:
    """Measure both implementations at each seed count; print a table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Breakout-MinAtar", help="a task with image-like obs")
    parser.add_argument("--num-envs", type=int, default=128, help="envs per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--updates", type=int, default=1, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="", help="free text stored in the JSON (machine load)")
    parser.add_argument("--out", type=Path, default=RESULTS / "conv_vmap.json")
    args = parser.parse_args(argv)

    import envs
    from car_jax.rl.config import PPOConfig
    from car_jax.rl.networks import CNNTorso, select_torso

    task = envs.make(args.env)
    torso = select_torso(PPOConfig.for_family(task.family), tuple(task.obs_shape), task.obs_dtype)
    if not isinstance(torso, CNNTorso):
        parser.error(f"{args.env}'s observation {task.obs_shape} does not use the CNN torso")
    rows = []
    single: dict[str, float] = {}
    print(f"{'seeds':>5} {'conv':>8} {'steps/s':>9} {'compile s':>9} {'patches/lax':>11} "
          f"{'time vs 1 seed':>15}")  # fmt: skip
    for seeds in sorted(args.seeds):
        preps = {
            impl: prepare(
                task, task.family, args.num_envs, seeds, args.updates, "pool", conv_impl=impl
            )
            for impl in IMPLS
        }
        timed = bench_interleaved(preps, args.repeats, budget_s=600.0)
        ratio = paired_ratio(timed["patches"], timed["lax"])
        for impl in IMPLS:
            r = timed[impl]
            if seeds == 1:
                single[impl] = r["median"]
            scaling = seeds * single[impl] / r["median"] if impl in single else None
            r.update(
                conv_impl=impl,
                seeds=seeds,
                num_envs_per_seed=args.num_envs,
                updates_per_chunk=args.updates,
                time_vs_one_seed=scaling,
                config=preps[impl]["config"],
            )
            if impl == "patches":
                r["ratio_patches_to_lax"] = ratio["median"]
                r["ratio_patches_to_lax_range"] = [ratio["min"], ratio["max"]]
            rows.append(r)
            print(
                f"{seeds:>5} {impl:>8} {fmt_rate(r['median']):>9} {r['compile_s']:>9.1f} "
                f"{ratio['median'] if impl == 'patches' else 1.0:>11.2f} "
                f"{'' if scaling is None else f'{scaling:.2f}':>15}",
                flush=True,
            )
    payload = {
        "benchmark": "conv_vmap",
        "env": args.env,
        "command": command(__file__, argv),
        "machine": machine(),
        "note": args.note,
        "unit": "env steps per second, all seeds together, steady state; compile apart",
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
        "rows": rows,
    }
    print(f"wrote {write_json(args.out, payload)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
