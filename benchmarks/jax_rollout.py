"""Rollout timing in JAX: the env alone and the env + fused code reward through the same code.

`make_rollout` is `jit(scan(vmap(step)))` with random actions and auto-reset (reset pool or per
step); `bench_interleaved` times several variants in interleaved rounds so they share the machine's
load; `overhead_analysis` splits the state-mode time into auto-reset, step and reward.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks._bench_util import block, compile_jit, rate_stats, time_repeats  # noqa: E402
from car_jax.reward import CodeReward  # noqa: E402
from car_jax.rl import resets  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402
from car_jax.sprite_inputs import task_sprite_frames  # noqa: E402

TASK_ID = "MiniGrid-DoorKey-8x8"
ROOT = Path(__file__).resolve().parent.parent


def spec_path(mode: str) -> Path:
    """The reference spec of DoorKey-8x8 for `mode` (prompts/reference, else examples/)."""
    ref = ROOT / "prompts" / "reference" / f"{TASK_ID}.{mode}.py"
    if ref.exists():
        return ref
    return ROOT / "examples" / ("doorkey.spec" if mode == "state" else "doorkey_pixels.spec")


def fused_env(task: Any, mode: str, lazy: bool = True) -> CodeReward:
    """`task` wrapped in CodeReward with the reference spec compiled for `mode`.

    `lazy`: compile with the task's sprite tables, so pixel programs read cell ids (no drawing).
    """
    spec = RewardSpec.load(spec_path(mode))
    sheets = task_sprite_frames(task, mode) if lazy else None
    compiled = compile_spec(spec, task.inputs(mode), task.constants(mode), sprite_frames=sheets)
    return CodeReward(task, compiled, mode=mode)


def make_rollout(env: Any, num_envs: int, num_steps: int, reset_mode: str = "pool"):
    """(reset, run): `run(state, key)` does `num_steps` vmapped random-action steps with auto-reset.

    `reset_mode`: "pool" draws one reset pool per call (`car_jax.rl.resets`, as PPO does per
    rollout; max(num_envs, num_envs * num_steps // 16) states); "step" resets every env every step.
    The reward is summed and returned so that XLA cannot drop the reward computation.
    """
    params = env.params
    v_reset = jax.vmap(env.reset, in_axes=(0, None))
    v_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def reset(key):
        return v_reset(jax.random.split(key, num_envs), params)[1]

    def run(state, key):
        def body(carry, _):
            state, key, pool = carry
            key, k_act, k_step, k_reset = jax.random.split(key, 4)
            actions = env.action.sample(k_act, (num_envs,))
            obs, nxt, reward, terminated, truncated, _ = v_step(
                jax.random.split(k_step, num_envs), state, actions, params
            )
            done = terminated | truncated
            # NOTE: auto-reset as a per-env select over the whole state pytree.
            if pool is None:
                _, state = resets.reset_every_step(env, k_reset, done, obs, nxt)
            else:
                _, state, pool = resets.take_resets(pool, done, obs, nxt)
            return (state, key, pool), reward.sum()

        pool = None
        if reset_mode == "pool":
            key, k_pool = jax.random.split(key)
            pool = resets.draw_reset_pool(
                env, k_pool, resets.default_pool_size(num_envs, num_steps)
            )
        (state, key, _), rewards = jax.lax.scan(body, (state, key, pool), None, length=num_steps)
        return state, key, rewards.sum()

    return reset, run


def prepare_jax(
    env: Any, num_envs: int, num_steps: int, reset_mode: str = "pool"
) -> dict[str, Any]:
    """Compile `make_rollout(env, num_envs, num_steps)`; returns its timed call, compile time and work."""
    reset, run = make_rollout(env, num_envs, num_steps, reset_mode)
    state = block(jax.jit(reset)(jax.random.key(0)))
    key = jax.random.key(1)
    compiled, compile_s = compile_jit(run, state, key)
    carry = {"state": state, "key": key}

    def once():
        carry["state"], carry["key"], total = compiled(carry["state"], carry["key"])
        return total

    return {"once": once, "compile_s": compile_s, "num_envs": num_envs, "scan_steps": num_steps}


def bench_interleaved(
    preps: dict[str, dict[str, Any]], repeats: int, budget_s: float = 20.0
) -> dict[str, Any]:
    """Time prepared variants in interleaved rounds (A B C, A B C, ...) so that they share the
    machine's load; per-variant rate stats plus per-round times for paired ratios.

    Fewer rounds (at least 3) are run when one round takes over `budget_s / repeats`.
    """
    t0 = time.perf_counter()
    for p in preps.values():
        block(p["once"]())  # warm-up call
    warm = time.perf_counter() - t0
    rounds = max(min(3, repeats), min(repeats, int(budget_s / max(warm, 1e-9))))
    times: dict[str, list[float]] = {name: [] for name in preps}
    for _ in range(rounds):
        for name, p in preps.items():
            t = time.perf_counter()
            block(p["once"]())
            times[name].append(time.perf_counter() - t)
    out = {}
    for name, p in preps.items():
        r = rate_stats(p["num_envs"] * p["scan_steps"], times[name])
        r.update(
            compile_s=p["compile_s"],
            num_envs=p["num_envs"],
            scan_steps=p["scan_steps"],
            times_s=times[name],
        )
        out[name] = r
    return out


def paired_ratio(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
    """Rate ratio a/b per interleaved round: median, min, max."""
    work_a, work_b = a["num_envs"] * a["scan_steps"], b["num_envs"] * b["scan_steps"]
    ratios = sorted(
        (work_a / ta) / (work_b / tb) for ta, tb in zip(a["times_s"], b["times_s"], strict=True)
    )
    return {"median": statistics.median(ratios), "min": ratios[0], "max": ratios[-1]}


def bench_jax(
    env: Any, num_envs: int, num_steps: int, repeats: int, budget_s: float = 10.0
) -> dict[str, Any]:
    """Compile time and steady-state steps/s of `make_rollout(env, num_envs, num_steps)` alone."""
    return bench_interleaved({"x": prepare_jax(env, num_envs, num_steps)}, repeats, budget_s)["x"]


class WithoutReset:
    """An env whose episodes never end (terminated/truncated forced False): no auto-reset cost."""

    def __init__(self, env: Any):
        self.env, self.params, self.action = env, env.params, env.action

    def reset(self, key: jax.Array, params: Any):
        """The wrapped env's reset."""
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any):
        """The wrapped env's step with both done flags False."""
        obs, nxt, reward, _, _, info = self.env.step(key, state, action, params)
        never = jnp.zeros((), bool)
        return obs, nxt, reward, never, never, info


def overhead_analysis(
    task: Any, fused: Any, num_envs: int, num_steps: int, repeats: int
) -> dict[str, Any]:
    """Where the state-mode rollout's time goes: auto-reset, env step, reward (observe + programs).

    Times, interleaved: env with auto-reset, env without reset, fused without reset; and the
    programs' completion (observe + all K programs) alone on a batch of states.
    """
    preps = {
        "env": prepare_jax(task, num_envs, num_steps),
        "env_no_reset": prepare_jax(WithoutReset(task), num_envs, num_steps),
        "fused_state_no_reset": prepare_jax(WithoutReset(fused), num_envs, num_steps),
    }
    res = bench_interleaved(preps, repeats)
    states = block(jax.jit(make_rollout(task, num_envs, 1)[0])(jax.random.key(0)))

    def completion(batch):
        return jax.vmap(fused.completion)(batch)  # observe (cell ids where read) + every program

    compiled, compile_s = compile_jit(completion, states)
    block(compiled(states))
    times = time_repeats(lambda: compiled(states), max(repeats, 20), warmup=1)
    res["completion_only"] = rate_stats(num_envs, times)
    res["completion_only"].update(compile_s=compile_s, num_envs=num_envs)
    r = res["fused_state_no_reset"]
    r["ratio_to_env_no_reset"] = paired_ratio(r, res["env_no_reset"])["median"]
    res["env_no_reset"]["ratio_to_env"] = paired_ratio(res["env_no_reset"], res["env"])["median"]
    env_step_s = 1.0 / res["env_no_reset"]["median"]
    res["summary"] = {
        "auto_reset_share_of_env_time": 1.0 - res["env"]["median"] / res["env_no_reset"]["median"],
        "reward_cost_vs_env_step": (1.0 / res["completion_only"]["median"]) / env_step_s,
        "explanation": (
            "env rows reset every env on every step and select per env (a fresh DoorKey layout is "
            "drawn each step, as PPO's auto-reset does); env_no_reset is the bare step. "
            "reward_cost_vs_env_step: time of observe + all programs per state over the bare step."
        ),
    }
    for v in res.values():
        v.pop("times_s", None)
    return res


def scan_length(num_envs: int, target: int, lo: int, hi: int) -> int:
    """Steps per compiled call so that each timed call does about `target` env steps."""
    return int(min(hi, max(lo, target // num_envs)))
