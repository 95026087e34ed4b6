"""Reward-search throughput: K specs x S seeds in one program vs 1 spec x S seeds, same total envs.

Side by side in one run, on one task (default MiniGrid-DoorKey-8x8, its family's PPO settings,
the progress observation as `car-jax search` trains with it, evaluation off so only training is
timed):
- "one spec": the task's reference spec fused with `CodeReward`, S seeds (`jit(vmap)` over
  seeds), K * E envs per seed;
- "K specs": `CodeReward(task, [spec, ...])` over K different DoorKey specs (the reference and
  the shipped search candidates, cycled), K * S units (one network each) of E envs;
- "K x S units, one spec" (the control): the K-spec program's shape, K * S units of E envs, with
  one spec's programs only. K specs vs the control is the cost of selecting among programs per
  env; the control vs one spec is the cost of training K * S small networks instead of S large
  batches;
so all three train on S * K * E envs. E defaults to the task's `car-jax run` env count, the
envs per unit that `car-jax search` trains with. Steady-state env steps/s (median over repeats,
after a warm-up call; the calls alternate, order reversed every repeat, and the ratios are also
taken per repeat) and compile time apart; then the compile time of the K-spec program for
K = 1, 2, 4, ...

    .venv/bin/python benchmarks/search_throughput.py --specs 8 --seeds 2
Writes benchmarks/results/search_throughput.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def _code_reward(task, compiled):
    """The env `car-jax search` trains: the code reward with the family's observation defaults."""
    from car_jax.experiment import default_carried_obs, default_progress_obs
    from car_jax.reward import CodeReward

    return CodeReward(task, compiled, progress_obs=default_progress_obs(task),
                      carried_obs=default_carried_obs(task))  # fmt: skip


def prepare_one_spec(task, compiled, config, seeds: int, updates: int):
    """One spec (CodeReward), `seeds` seeds of config.num_envs envs: (call, work, compile s)."""
    from car_jax.rl.ppo import PPOTrainer

    trainer = PPOTrainer(config, _code_reward(task, compiled))
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

    env = _code_reward(task, [pool[i % len(pool)] for i in range(k)])
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
    return _looped(fn, runner, specs, units * updates * config.batch_size, compile_s)


def prepare_control(task, compiled, k: int, config, seeds: int, updates: int):
    """The control: K * `seeds` units of config.num_envs envs, all on one spec's programs."""
    fn, runner, specs, compile_s, units = compile_multi(
        task, [compiled], 1, config, k * seeds, updates
    )
    return _looped(fn, runner, specs, units * updates * config.batch_size, compile_s)


def _looped(fn, runner, specs, work: int, compile_s: float):
    """(call, work, compile s) of a compiled multi-spec program that carries its runner on."""
    state = {"runner": runner}

    def once():
        state["runner"], metrics = fn(state["runner"], specs, jnp.int32(0))
        return metrics

    return once, work, compile_s


def paired_ratios(times: dict[str, list[float]], num: str, den: str) -> dict[str, float]:
    """Per repeat, rate(num) / rate(den) from the same repeat's calls: median, min, max.

    The programs do the same work (S * K * E envs, same updates), so the rate ratio is the
    inverse ratio of their seconds.
    """
    ratios = sorted(d / n for n, d in zip(times[num], times[den]))
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}


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
    parser.add_argument("--envs-per-unit", type=int, default=None,
                        help="E: envs per (spec, seed) (default: the task's run env count)")  # fmt: skip
    parser.add_argument("--updates", type=int, default=2, help="updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-ks", type=int, nargs="*", default=[1, 2, 4],
                        help="K values whose compile time is measured too (K itself always)")  # fmt: skip
    parser.add_argument("--note", default="", help="free text saved in the JSON (e.g. load)")
    parser.add_argument("--out", type=Path, default=RESULTS / "search_throughput.json")
    args = parser.parse_args(argv)
    for flag in ("specs", "seeds", "envs_per_unit", "updates", "repeats"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1, got {value}")

    import envs
    from car_jax.experiment import make_config
    from car_jax.rl.config import PPOConfig

    task = envs.make(args.env)
    pool = spec_pool(task, args.env)
    k, s = args.specs, args.seeds
    e = args.envs_per_unit or make_config(task).num_envs

    def config(num_envs: int) -> PPOConfig:
        base = PPOConfig.for_family(task.family)
        return base.replace(num_envs=num_envs, eval_episodes=0,
                            total_timesteps=num_envs * base.num_steps * args.updates)  # fmt: skip

    print(f"{args.env}: {k} specs x {s} seeds x {e} envs vs 1 spec x {s} seeds x {k * e} envs")
    one_call, one_work, one_compile = prepare_one_spec(
        task, pool[0], config(k * e), s, args.updates
    )
    many_call, many_work, many_compile = prepare_multi(task, pool, k, config(e), s, args.updates)
    ctl_call, ctl_work, ctl_compile = prepare_control(task, pool[0], k, config(e), s, args.updates)
    times = interleaved({"one": one_call, "many": many_call, "control": ctl_call}, args.repeats)
    one = rate_stats(one_work, times["one"])
    one.update(compile_s=one_compile, units=s, envs_per_unit=k * e)
    many = rate_stats(many_work, times["many"])
    many.update(compile_s=many_compile, units=k * s, envs_per_unit=e, specs=k)
    ctl = rate_stats(ctl_work, times["control"])
    ctl.update(compile_s=ctl_compile, units=k * s, envs_per_unit=e, specs=1)
    ratio = many["median"] / one["median"]
    ratios = {
        "k_specs_to_one_spec": paired_ratios(times, "many", "one"),
        "k_specs_to_control": paired_ratios(times, "many", "control"),
        "control_to_one_spec": paired_ratios(times, "control", "one"),
    }
    rows = (("1 spec", one), (f"{k} specs", many), (f"{k * s} units, 1 spec", ctl))
    for name, row in rows:
        print(
            f"  {name:<18} {fmt_rate(row['median']):>8} env-steps/s  compile {row['compile_s']:.1f} s"
        )
    print(f"  ratio {k} specs / 1 spec: {ratio:.2f} (target >= 0.8); per repeat "
          f"{ratios['k_specs_to_one_spec']['min']:.2f}-{ratios['k_specs_to_one_spec']['max']:.2f}")  # fmt: skip
    print(f"  selecting among programs ({k} specs / control): "
          f"{ratios['k_specs_to_control']['median']:.2f}; "
          f"{k * s} small networks (control / 1 spec): {ratios['control_to_one_spec']['median']:.2f}")  # fmt: skip
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
            "control_one_spec_k_units": ctl,
            "ratio_k_specs_to_one_spec": ratio,
            "paired_ratios": ratios,
            "paired_ratios_note": "per repeat, from calls made back to back: k_specs_to_control is "
            "the cost of selecting among the specs' programs per env, control_to_one_spec the cost "
            "of K * S networks on E envs each instead of S networks on K * E envs",
            "target_ratio": 0.8,
            "target_met": ratio >= 0.8,
            "compile_seconds_by_k": compile_by_k,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
