"""Where a `car-jax run`'s training time goes: PPO updates vs evaluation, per reward variant.

For one task at its run defaults (`car_jax.experiment.make_config`: envs, rollout, epochs, seeds
vmapped as `car-jax run` does), times side by side in interleaved rounds:
- one compiled chunk of `--updates` PPO updates with evaluation off (rollout + GAE + epochs);
- one evaluation (`PPOTrainer.evaluate`: greedy and stochastic episodes on fresh resets) of the
  initial policy, which, untrained, runs every episode to the task's time limit: the most an
  evaluation can cost;
and, on the run's own path, chunks of the driver's length (`car_jax.rl.driver.schedule`): one
without evaluation plus the evaluation the driver runs between chunks, and one with the
evaluation inside its scan, with none due and with one due (their difference is what an
evaluation costs there); for the code reward (with the family's progress observation) and the
sparse reward. From them it
projects the run's training time: updates x update time + evaluations x evaluation time (an upper
bound for the evaluation part, since trained policies end their episodes sooner), and prints how
the steady-state cost splits. Compile times are reported apart.

    .venv/bin/python benchmarks/run_breakdown.py --task MiniGrid-DoorKey-16x16
Writes benchmarks/results/run_breakdown_<task>.json (or --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_util import RESULTS, block, command, compile_jit, machine, write_json  # noqa: E402
from jax_rollout import bench_interleaved  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def dense_flops_per_update(params: Any, cfg: Any) -> float:
    """Floating-point operations of the dense layers in one PPO update of one seed, counted from
    the network's kernels: 2 x (kernel entries) per sample and forward pass, for the rollout's
    forward pass, the bootstrap values of the final observations (the critic's forward pass; the
    whole network's is counted, an upper bound by the actor's share) and every epoch's forward and
    backward pass (backward = 2 x forward). Embedding lookups and convolutions are not counted."""
    kernels = [
        x for path, x in jax.tree_util.tree_leaves_with_path(params)
        if "kernel" in jax.tree_util.keystr(path) and x.ndim == 3  # [seeds, in, out]
    ]  # fmt: skip
    macs_per_sample = sum(int(k.shape[1]) * int(k.shape[2]) for k in kernels)
    passes = 1 + 1 + 3 * cfg.update_epochs
    return 2.0 * macs_per_sample * cfg.batch_size * passes


def prepare_variant(task: Any, reward: str, seeds: int, updates: int) -> dict[str, Any]:
    """Compiled update chunk and evaluation of one reward variant; timed calls and compile times."""
    from car_jax.experiment import make_config, make_env
    from car_jax.rl.ppo import PPOTrainer
    from car_jax.spec import RewardSpec, compile_spec

    spec = RewardSpec.load(ROOT / "prompts" / "reference" / f"{task.id}.state.py")
    compiled = compile_spec(spec, task.inputs("state"), task.constants("state"))
    env = make_env(task, compiled, "state", reward)
    run_cfg = make_config(task)
    keys = jax.random.split(jax.random.key(0), seeds)
    # Updates without evaluation: the same trainer with eval_episodes=0.
    train_cfg = run_cfg.replace(eval_episodes=0)
    trainer = PPOTrainer(train_cfg, env)
    runner = block(trainer.batched_init()(keys, train_cfg.hyper()))
    chunk, chunk_compile = compile_jit(jax.vmap(lambda r: trainer.run(r, updates)), runner)
    # The evaluation the run does every eval_interval updates, on the initial policy.
    evaluator = PPOTrainer(run_cfg, env)
    eval_keys = jax.random.split(jax.random.key(1), seeds)
    evaluate, eval_compile = compile_jit(jax.vmap(evaluator.evaluate), runner.params, eval_keys)
    state = {"runner": runner}

    def update_once():
        state["runner"], metrics = chunk(state["runner"])
        return metrics

    def eval_once():
        return evaluate(runner.params, eval_keys)

    lengths = block(eval_once())
    # The run's own path (`car_jax.rl.driver.train_run`): chunks of the driver's length. Where
    # they end at every evaluation point the driver evaluates between them (a chunk without
    # evaluation, then `batched_evaluate`); otherwise inside the chunk's scan. Both are timed:
    # the chunk with the in-scan evaluation with none due and with one due at its last update.
    from car_jax.rl.driver import evaluates_between_chunks, schedule

    n = schedule(run_cfg, None, None)[0]
    in_run = {}
    if n < run_cfg.eval_interval:
        run_runner = block(evaluator.batched_init()(keys, run_cfg.hyper()))
        start0 = jax.numpy.int32(0)
        plain_fn, plain_compile = compile_jit(
            jax.vmap(lambda r, s: evaluator.run(r, n, s, False), in_axes=(0, None)),
            run_runner,
            start0,
        )
        scan_fn, scan_compile = compile_jit(
            jax.vmap(lambda r, s: evaluator.run(r, n, s), in_axes=(0, None)), run_runner, start0
        )
        between_fn, between_compile = compile_jit(evaluator.batched_evaluate(), run_runner)
        variants = {
            "chunk": (lambda: plain_fn(run_runner, start0), plain_compile),
            "evaluation_between_chunks": (lambda: between_fn(run_runner), between_compile),
            "chunk_in_scan_none_due": (lambda: scan_fn(run_runner, start0), scan_compile),
            "chunk_in_scan_one_due": (
                lambda: scan_fn(run_runner, jax.numpy.int32(run_cfg.eval_interval - n)),
                scan_compile,
            ),
        }
        for name, (once, compile_s) in variants.items():
            in_run[name] = {"once": once, "compile_s": compile_s, "num_envs": 1, "scan_steps": 1}
    return {
        "between_chunks": evaluates_between_chunks(run_cfg, n),
        "in_run": in_run,
        "chunk_updates": n,
        "config": run_cfg,
        "update": {
            "once": update_once,
            "compile_s": chunk_compile,
            "num_envs": 1,
            "scan_steps": updates,
        },
        "eval": {"once": eval_once, "compile_s": eval_compile, "num_envs": 1, "scan_steps": 1},
        "eval_length": float(lengths["eval_greedy_length"].mean()),
        "obs_shape": list(env.obs_shape),
        "dense_flops_per_update": dense_flops_per_update(runner.params, train_cfg),
    }


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, time both variants, print the split, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="MiniGrid-DoorKey-16x16")
    parser.add_argument("--seeds", type=int, default=2, help="seeds vmapped (car-jax run: 2)")
    parser.add_argument("--updates", type=int, default=4, help="updates per timed chunk")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rewards", nargs="+", default=["car", "sparse"], choices=("car", "sparse")
    )
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import envs

    task = envs.make(args.task)
    preps = {r: prepare_variant(task, r, args.seeds, args.updates) for r in args.rewards}
    parts = {(r, part): p[part] for r, p in preps.items() for part in ("update", "eval")}
    parts.update({(r, part): x for r, p in preps.items() for part, x in p["in_run"].items()})
    timed = bench_interleaved(parts, args.repeats, budget_s=600.0)
    rows = []
    header = (
        f"{'reward':>7} {'update s':>9} {'eval s':>7} {'eval len':>8} {'updates':>7} {'evals':>5} "
        f"{'updates s':>9} {'evals s':>8} {'eval %':>6} {'env-steps/s':>11} {'compile s':>9}"
    )
    print(header)
    for reward, p in preps.items():
        cfg = p["config"]
        per_update = timed[reward, "update"]["seconds_median"] / args.updates
        per_eval = timed[reward, "eval"]["seconds_median"]
        evals = len(range(cfg.eval_interval, cfg.num_updates + 1, cfg.eval_interval))
        evals += int(cfg.num_updates % cfg.eval_interval != 0)  # the last update is evaluated
        updates_s, evals_s = cfg.num_updates * per_update, evals * per_eval
        steps = cfg.num_updates * cfg.batch_size * args.seeds
        row = {
            "reward": reward,
            "obs_shape": p["obs_shape"],
            "seconds_per_update": per_update,
            "dense_gflop_per_update_all_seeds": p["dense_flops_per_update"] * args.seeds / 1e9,
            "dense_gflops_per_second": p["dense_flops_per_update"] * args.seeds / per_update / 1e9,
            "seconds_per_evaluation_untrained": per_eval,
            "evaluation_episode_length_untrained": p["eval_length"],
            "updates": cfg.num_updates,
            "evaluations": evals,
            "projected_update_seconds": updates_s,
            "projected_evaluation_seconds_at_most": evals_s,
            "evaluation_share_at_most": evals_s / (updates_s + evals_s),
            "update_env_steps_per_second": cfg.batch_size * args.seeds / per_update,
            "projected_env_steps_per_second_at_least": steps / (updates_s + evals_s),
            "compile_seconds": {
                "update_chunk": p["update"]["compile_s"],
                "evaluation": p["eval"]["compile_s"],
            },
            "timing": {
                "update_chunk": timed[reward, "update"],
                "evaluation": timed[reward, "eval"],
            },
            "config": cfg.to_dict(),
        }
        if (reward, "chunk") in timed:
            med = {k: timed[reward, k]["seconds_median"] for k in p["in_run"]}
            chunk_s, between = med["chunk"], med["evaluation_between_chunks"]
            in_scan = med["chunk_in_scan_one_due"] - med["chunk_in_scan_none_due"]
            chunks = cfg.num_updates / p["chunk_updates"]
            row["in_run"] = {
                "chunk_updates": p["chunk_updates"],
                "driver_evaluates_between_chunks": p["between_chunks"],
                "seconds_per_chunk_without_evaluation": chunk_s,
                "seconds_per_evaluation_between_chunks": between,
                "seconds_per_evaluation_in_chunk_scan": in_scan,
                "in_scan_over_between": in_scan / between,
                "projected_seconds_between_chunks": chunks * chunk_s + evals * between,
                "projected_seconds_in_scan": chunks * med["chunk_in_scan_none_due"]
                + evals * in_scan,
                "compile_seconds": {k: p["in_run"][k]["compile_s"] for k in p["in_run"]},
                "timing": {k: timed[reward, k] for k in p["in_run"]},
            }
        rows.append(row)
        print(
            f"{reward:>7} {per_update:>9.3f} {per_eval:>7.2f} {p['eval_length']:>8.0f} "
            f"{cfg.num_updates:>7} {evals:>5} {updates_s:>9.1f} {evals_s:>8.1f} "
            f"{100 * row['evaluation_share_at_most']:>5.0f}% "
            f"{row['projected_env_steps_per_second_at_least']:>11,.0f} "
            f"{p['update']['compile_s'] + p['eval']['compile_s']:>9.1f}",
            flush=True,
        )
    for row in rows:
        print(
            f"{row['reward']:>7} dense layers: {row['dense_gflop_per_update_all_seeds']:.1f} GFLOP "
            f"per update ({args.seeds} seeds), {row['dense_gflops_per_second']:.0f} GFLOP/s"
        )
        if "in_run" in row:
            x = row["in_run"]
            where = "between chunks" if x["driver_evaluates_between_chunks"] else "in the chunk"
            print(
                f"{row['reward']:>7} in the run's chunks ({x['chunk_updates']} updates, the "
                f"driver evaluates {where}): {x['seconds_per_chunk_without_evaluation']:.2f} s "
                f"per chunk; an evaluation between chunks "
                f"{x['seconds_per_evaluation_between_chunks']:.2f} s, inside a chunk's scan "
                f"{x['seconds_per_evaluation_in_chunk_scan']:.2f} s "
                f"({x['in_scan_over_between']:.1f}x); projected training "
                f"{x['projected_seconds_between_chunks']:.0f} s between chunks, "
                f"{x['projected_seconds_in_scan']:.0f} s in the scan"
            )
    out = args.out or RESULTS / f"run_breakdown_{args.task.lower().removeprefix('minigrid-')}.json"
    write_json(
        out,
        {
            "benchmark": "run_breakdown",
            "task": args.task,
            "command": command(__file__, argv),
            "machine": machine(),
            "note": args.note,
            "seeds": args.seeds,
            "method": "per variant: a compiled chunk of `updates` PPO updates with evaluation off "
            "and one evaluation of the initial (untrained) policy, timed in the same interleaved "
            "rounds (one warm-up call each); dense GFLOP: 2 x kernel entries per sample and pass "
            "(rollout, bootstrap values, 3 per epoch), embeddings and convolutions not counted; "
            "projected seconds = count x median time; the "
            "evaluation figure is an upper bound (an untrained policy runs every episode to the "
            "time limit); in_run: chunks of the driver's length (car_jax.rl.driver.schedule): "
            "one without evaluation and the evaluation the driver runs between chunks, and one "
            "with the evaluation inside its scan timed with none due and with one due (their "
            "difference the cost of an evaluation inside a chunk), all in the same rounds; "
            "compile times apart",
            "rows": rows,
        },
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
