"""Reward-search throughput: K specs x S seeds in one program vs 1 spec x S seeds, same total envs.

Side by side in one run, on one task (default MiniGrid-DoorKey-8x8, its family's PPO settings,
evaluation off so only training is timed):
- "one spec": the task's reference spec fused with `CodeReward`, S seeds (`jit(vmap)` over
  seeds), K * E envs per seed;
- "K specs": `CodeReward(task, [spec, ...])` over K different DoorKey specs (the reference and
  the shipped search candidates, cycled), K * S units (one network each) of E envs;
so both train on S * K * E envs. Steady-state env steps/s (median over repeats, after a warm-up
call; the two programs' calls alternate) and compile time apart; then the compile time of the K-spec program for K = 1, 2, 4, ...

    .venv/bin/python benchmarks/search_throughput.py --specs 8 --seeds 2 --envs-per-unit 32
Writes benchmarks/results/search_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _bench_util import (  # noqa: E402
    RESULTS,
    block,
    command,
    fmt_rate,
    machine,
    rate_stats,
    write_json,
)

SEARCH_SCRIPT = ROOT / "prompts" / "replay" / "search" / "MiniGrid-DoorKey-8x8.state"


def _programs(spec: Any) -> tuple[str, ...]:
    return tuple(p.source for p in spec.programs)


def spec_pool(task: Any, task_id: str) -> list[Any]:
    """Distinct compiled specs for `task`: its reference spec, then the shipped search candidates."""
    from car_jax.spec import RewardSpec, compile_spec
    from car_jax.vlm.prompts import parse_programs

    specs = [RewardSpec.load(ROOT / "prompts" / "reference" / f"{task_id}.state.py")]
    for path in sorted(SEARCH_SCRIPT.glob("candidates*.json")):
        for c in json.loads(path.read_text())["answer"]["candidates"]:
            spec = parse_programs(json.dumps({"programs": c["programs"]}), c["task"])
            if _programs(spec) not in {_programs(s) for s in specs}:
                specs.append(spec)
    return [compile_spec(s, task.inputs("state"), task.constants("state")) for s in specs]


def prepare_one_spec(task, compiled, config, seeds: int, updates: int):
    """One spec (CodeReward), `seeds` seeds of config.num_envs envs: (call, work, compile s)."""
    from car_jax.reward import CodeReward
    from car_jax.rl.ppo import PPOTrainer

    trainer = PPOTrainer(config, CodeReward(task, compiled))
    keys = jax.vmap(jax.random.key)(jnp.arange(seeds, dtype=jnp.uint32))
    state = {"runner": block(trainer.batched_init()(keys, config.hyper()))}
    t0 = time.perf_counter()
    fn = trainer.batched_run(updates).lower(state["runner"], jnp.int32(0)).compile()
    compile_s = time.perf_counter() - t0

    def once():
        state["runner"], metrics = fn(state["runner"], jnp.int32(0))
        return metrics

    return once, seeds * updates * config.batch_size, compile_s


def compile_multi(task, pool, k: int, config, seeds: int, updates: int):
    """The K-spec program: (compiled fn, runner, spec index, compile seconds, units)."""
    from car_jax.multi import MultiSpecTrainer
    from car_jax.reward import CodeReward

    env = CodeReward(task, [pool[i % len(pool)] for i in range(k)])
    multi = MultiSpecTrainer(config, env)
    units = k * seeds
    keys = jax.vmap(jax.random.key)(jnp.tile(jnp.arange(seeds, dtype=jnp.uint32), k))
    specs = jnp.repeat(jnp.arange(k, dtype=jnp.int32), seeds)
    runner = block(multi.init()(keys, config.hyper()))
    t0 = time.perf_counter()
    fn = multi.run(updates).lower(runner, specs, jnp.int32(0)).compile()
    return fn, runner, specs, time.perf_counter() - t0, units


def prepare_multi(task, pool, k: int, config, seeds: int, updates: int):
    """K specs x `seeds` seeds of config.num_envs envs each: (call, work, compile s)."""
    fn, runner, specs, compile_s, units = compile_multi(task, pool, k, config, seeds, updates)
    state = {"runner": runner}

    def once():
        state["runner"], metrics = fn(state["runner"], specs, jnp.int32(0))
        return metrics

    return once, units * updates * config.batch_size, compile_s


def interleaved(calls: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each call, alternating them (order reversed every repeat) after a warm-up
    of each, so a change in the machine's load hits both alike."""
    names = list(calls)
    for name in names:
        block(calls[name]())
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            block(calls[name]())
            times[name].append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    """Measure one spec vs K specs side by side, then compile time vs K; print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="MiniGrid-DoorKey-8x8")
    parser.add_argument("--specs", type=int, default=8, help="K")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--envs-per-unit", type=int, default=32, help="E: envs per (spec, seed)")
    parser.add_argument("--updates", type=int, default=2, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-ks", type=int, nargs="*", default=[1, 2, 4],
                        help="K values whose compile time is measured too (K itself always)")  # fmt: skip
    parser.add_argument("--note", default="", help="free text saved in the JSON (e.g. load)")
    parser.add_argument("--out", type=Path, default=RESULTS / "search_throughput.json")
    args = parser.parse_args(argv)

    import envs
    from car_jax.rl.config import PPOConfig

    task = envs.make(args.env)
    pool = spec_pool(task, args.env)
    k, s, e = args.specs, args.seeds, args.envs_per_unit

    def config(num_envs: int) -> PPOConfig:
        base = PPOConfig.for_family(task.family)
        return base.replace(num_envs=num_envs, eval_episodes=0,
                            total_timesteps=num_envs * base.num_steps * args.updates)  # fmt: skip

    print(f"{args.env}: {k} specs x {s} seeds x {e} envs vs 1 spec x {s} seeds x {k * e} envs")
    one_call, one_work, one_compile = prepare_one_spec(
        task, pool[0], config(k * e), s, args.updates
    )
    many_call, many_work, many_compile = prepare_multi(task, pool, k, config(e), s, args.updates)
    times = interleaved({"one": one_call, "many": many_call}, args.repeats)
    one = rate_stats(one_work, times["one"])
    one.update(compile_s=one_compile, units=s, envs_per_unit=k * e)
    many = rate_stats(many_work, times["many"])
    many.update(compile_s=many_compile, units=k * s, envs_per_unit=e, specs=k)
    ratio = many["median"] / one["median"]
    print(f"  1 spec : {fmt_rate(one['median']):>8} env-steps/s  compile {one['compile_s']:.1f} s")
    print(
        f"  {k} specs: {fmt_rate(many['median']):>8} env-steps/s  compile "
        f"{many['compile_s']:.1f} s  ratio {ratio:.2f} (target >= 0.8)"
    )
    compile_by_k = {str(k): many["compile_s"]}
    for kk in sorted(set(args.compile_ks) - {k}):
        *_, seconds, _ = compile_multi(task, pool, kk, config(e), s, args.updates)
        compile_by_k[str(kk)] = seconds
        print(f"  compile with K={kk}: {seconds:.1f} s")
    compile_by_k = dict(sorted(compile_by_k.items(), key=lambda kv: int(kv[0])))
    write_json(
        args.out,
        {
            "benchmark": "search_throughput",
            "env": args.env,
            "command": command(__file__, argv),
            "machine": machine(),
            "note": args.note
            or "measured on a 2-core CPU shared with other jobs (busy machine): absolute rates "
            "are low and noisy; the ratio is measured side by side in one run",
            "unit": "env steps per second, all units together, steady state (evaluation off)",
            "specs": k,
            "seeds": s,
            "envs_per_unit": e,
            "total_envs": k * s * e,
            "spec_subtask_counts": [len(pool[i % len(pool)].programs) for i in range(k)],
            "distinct_specs": min(k, len(pool)),
            "specs_note": "the reference spec and the shipped DoorKey-8x8 search candidates, "
            "cycled when K exceeds them (XLA may share the work of a repeated spec)",
            "one_spec": one,
            "k_specs": many,
            "ratio_k_specs_to_one_spec": ratio,
            "target_ratio": 0.8,
            "target_met": ratio >= 0.8,
            "compile_seconds_by_k": compile_by_k,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
