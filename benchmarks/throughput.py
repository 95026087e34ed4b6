"""Headline throughput: fused code reward vs env alone vs Farama MiniGrid vs a per-step image encoder.

One run, one machine, one JSON (benchmarks/results/throughput.json), one table. For MiniGrid
DoorKey-8x8 and each number of parallel envs:
  1. the env alone, random actions, auto-reset inside the scan;
  2. the env + the fused code reward (`CodeReward`) in `state` and `pixels` mode, and its ratio to 1;
  3. Farama MiniGrid DoorKey-8x8 with the same sub-task checks as Python functions over the env's
     state, in a Python loop and in gymnasium's vector envs;
  4. a ViT-B/32-sized image encoder (random weights) on every step's 224x224 frame: the cost of
     asking a vision model each step. It measures cost, not reward quality.

    .venv/bin/python benchmarks/throughput.py            # full run (~10 min on 2 CPU cores)
    .venv/bin/python benchmarks/throughput.py --quick    # tiny sizes, seconds
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
import numpy as np

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
from car_jax.reward import CodeReward  # noqa: E402
from car_jax.rl import resets  # noqa: E402
from car_jax.spec import RewardSpec, compile_spec  # noqa: E402
from car_jax.sprite_inputs import task_sprite_frames  # noqa: E402

TASK_ID = "MiniGrid-DoorKey-8x8"
FARAMA_ID = "MiniGrid-DoorKey-8x8-v0"
ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "fused_state_vs_env_at_4096": 0.95,
    "fused_pixels_vs_env_at_4096": 0.5,
    "fused_vs_farama_loop": 200.0,
    "fused_vs_encoder": 10_000.0,
}
NOTE_ENCODER = (
    "The image-encoder rows measure COST ONLY (random weights): what it takes to run a "
    "ViT-B/32-sized vision model on every step's frame, not how good a reward it would give."
)


# --------------------------------------------------------------------------------------------
# JAX: env alone and env + fused code reward, same rollout code
# --------------------------------------------------------------------------------------------
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
        return jax.vmap(lambda s: fused.compiled.completion(task.observe(s, fused.mode)))(batch)

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


# --------------------------------------------------------------------------------------------
# Farama MiniGrid with the same sub-task checks written in Python
# --------------------------------------------------------------------------------------------
def _carrying_key(env) -> bool:
    c = env.carrying
    return c is not None and c.type == "key" and c.color == "yellow"


def _door_open(env) -> bool:
    return any(
        c is not None and c.type == "door" and c.color == "yellow" and c.is_open
        for c in env.grid.grid
    )


def _reached_goal(env) -> bool:
    cell = env.grid.get(*env.agent_pos)
    return cell is not None and cell.type == "goal"


PY_CHECKS = (_carrying_key, _door_open, _reached_goal)


def python_reward_wrapper():
    """A gymnasium Wrapper adding one-time sub-task bonuses from Python checks (as CodeReward does)."""
    import gymnasium as gym

    class PythonCodeReward(gym.Wrapper):
        """Evaluates every sub-task check each step, pays the current one's bonus once."""

        def reset(self, **kwargs):
            self.next_subtask = 0
            return self.env.reset(**kwargs)

        def step(self, action):
            obs, reward, terminated, truncated, info = self.env.step(action)
            done_now = [check(self.env.unwrapped) for check in PY_CHECKS]
            if self.next_subtask < len(PY_CHECKS) and done_now[self.next_subtask]:
                reward += 0.5
                self.next_subtask += 1
            info["subtasks_done"] = self.next_subtask
            return obs, reward, terminated, truncated, info

    return PythonCodeReward


def make_farama_env():
    """One Farama DoorKey-8x8 env wrapped with the Python sub-task reward."""
    import gymnasium as gym
    from minigrid.wrappers import ImgObsWrapper  # importing minigrid registers its ids

    # NOTE: ImgObsWrapper keeps only the image observation (what a policy reads); the dict
    # observation's mission string cannot go through the async vector env's shared memory.
    return python_reward_wrapper()(ImgObsWrapper(gym.make(FARAMA_ID)))


def bench_farama_loop(seconds: float, repeats: int, with_reward: bool = True) -> dict[str, Any]:
    """Steps/s of one Farama env stepped in a Python loop with random actions and auto-reset."""
    import gymnasium as gym
    from minigrid.wrappers import ImgObsWrapper

    env = make_farama_env() if with_reward else ImgObsWrapper(gym.make(FARAMA_ID))
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    n_actions = int(env.action_space.n)
    times, steps = [], 0
    rates = []
    for _ in range(repeats):
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(200):
                _, _, term, trunc, _ = env.step(int(rng.integers(n_actions)))
                if term or trunc:
                    env.reset()
            steps += 200
        dt = time.perf_counter() - t0
        times.append(dt)
        rates.append(steps / dt)
    env.close()
    return _rates_summary(rates, num_envs=1)


def bench_farama_vector(num_envs: int, kind: str, seconds: float, repeats: int) -> dict[str, Any]:
    """Steps/s of gymnasium's SyncVectorEnv/AsyncVectorEnv over Farama envs with the Python reward."""
    import gymnasium as gym

    cls = gym.vector.SyncVectorEnv if kind == "sync" else gym.vector.AsyncVectorEnv
    # NOTE: "spawn", not fork: forking a process that runs JAX's threads can deadlock.
    extra = {} if kind == "sync" else {"context": "spawn"}
    venv = cls([make_farama_env for _ in range(num_envs)], **extra)  # autoreset is built in
    venv.reset(seed=0)
    rng = np.random.default_rng(0)
    n_actions = int(venv.single_action_space.n)
    rates = []
    for _ in range(repeats):
        steps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for _ in range(20):
                venv.step(rng.integers(n_actions, size=num_envs))
            steps += 20 * num_envs
        rates.append(steps / (time.perf_counter() - t0))
    venv.close()
    return _rates_summary(rates, num_envs=num_envs, vector=kind)


def _rates_summary(rates: list[float], **extra: Any) -> dict[str, Any]:
    rates = sorted(rates)
    med = statistics.median(rates)
    return {
        "median": med,
        "min": rates[0],
        "max": rates[-1],
        "spread": (rates[-1] - rates[0]) / med,
        **extra,
    }


# --------------------------------------------------------------------------------------------
# ViT-B/32-sized image encoder, random weights
# --------------------------------------------------------------------------------------------
def vit_b32(patch: int = 32, width: int = 768, layers: int = 12, heads: int = 12, mlp: int = 3072):
    """A flax ViT image tower with CLIP ViT-B/32's layer sizes (pre-LN blocks, class token)."""
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=heads)(y, y)
            y = nn.LayerNorm()(x)
            y = nn.Dense(mlp)(y)
            return x + nn.Dense(width)(nn.gelu(y))

    class ViT(nn.Module):
        @nn.compact
        def __call__(self, images):  # [B, 224, 224, 3] float32
            x = nn.Conv(width, (patch, patch), strides=(patch, patch), use_bias=False)(images)
            b = x.shape[0]
            x = x.reshape(b, -1, width)
            cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, width))
            x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, width)), x], axis=1)
            x = x + self.param("pos", nn.initializers.normal(0.02), (1, x.shape[1], width))
            x = nn.LayerNorm()(x)
            for _ in range(layers):
                x = Block()(x)
            return nn.Dense(512, use_bias=False)(nn.LayerNorm()(x[:, 0]))  # image embedding

    return ViT()


def bench_encoder(batch: int, repeats: int, size: int = 224) -> dict[str, Any]:
    """Images/s of the ViT-B/32-sized encoder on 224x224 frames (= steps/s if queried every step)."""
    model = vit_b32()
    images = jax.random.uniform(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    params = jax.jit(model.init)(jax.random.key(1), images)
    compiled, compile_s = compile_jit(model.apply, params, images)
    times = time_repeats(lambda: compiled(params, images), repeats, warmup=1)
    out = rate_stats(batch, times)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    out.update(compile_s=compile_s, batch=batch, image_size=size, params=n_params)
    return out


# --------------------------------------------------------------------------------------------
def scan_length(num_envs: int, target: int, lo: int, hi: int) -> int:
    """Steps per compiled call so that each timed call does about `target` env steps."""
    return int(min(hi, max(lo, target // num_envs)))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--envs", type=int, nargs="+", default=[1, 16, 256, 4096, 16384], help="parallel env counts"
    )
    ap.add_argument("--modes", nargs="+", default=["state", "pixels"], choices=["state", "pixels"])
    ap.add_argument(
        "--repeats", type=int, default=5, help="timed repeats per point (median reported)"
    )
    ap.add_argument("--target-steps", type=int, default=2**19, help="env steps per timed call")
    ap.add_argument("--farama-seconds", type=float, default=2.0, help="seconds per Farama repeat")
    ap.add_argument(
        "--farama-vector", type=int, default=16, help="envs in the gymnasium vector env (0: skip)"
    )
    ap.add_argument("--encoder-batch", type=int, default=8, help="images per encoder call")
    ap.add_argument("--no-farama", action="store_true", help="skip the Farama MiniGrid part")
    ap.add_argument("--no-encoder", action="store_true", help="skip the image-encoder part")
    ap.add_argument(
        "--no-overhead", action="store_true", help="skip the state-mode overhead analysis"
    )
    ap.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    ap.add_argument(
        "--no-compare",
        action="store_true",
        help="skip the side-by-side rows of the old ways (reset every step; drawn pixel frames)",
    )
    ap.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="JSON",
        help="only redraw the .md table and .png of a saved run",
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run (seconds)")
    ap.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    ap.add_argument(
        "--note",
        default="",
        help="free text stored in the JSON (e.g. 'CPU shared with other jobs')",
    )
    args = ap.parse_args(argv)
    if args.render is not None:
        payload = json.loads(args.render.read_text(encoding="utf-8"))
        print(render_markdown(payload))
        args.render.with_suffix(".md").write_text(render_markdown(payload), encoding="utf-8")
        print(f"wrote {plot_throughput(payload, args.render.with_suffix('.png'))}")
        return 0
    if args.quick:
        args.envs = [n for n in args.envs if n <= 16] or [1, 16]
        args.repeats, args.target_steps = 2, 256
        args.farama_seconds, args.farama_vector, args.encoder_batch = 0.2, 2, 1

    task = envs.make(TASK_ID)
    # name -> (env, auto-reset mode); the *_step_reset / *_drawn rows are the old ways, side by side
    variants: dict[str, Any] = {"env": (task, "pool")}
    for mode in args.modes:
        variants[f"fused_{mode}"] = (fused_env(task, mode), "pool")
    if not args.no_compare:
        variants["env_step_reset"] = (task, "step")
        if "pixels" in args.modes:
            variants["fused_pixels_drawn"] = (fused_env(task, "pixels", lazy=False), "pool")

    lo, hi = (8, 64) if args.quick else (32, 2000)
    jax_rows: list[dict[str, Any]] = []
    for n in args.envs:
        row: dict[str, Any] = {"num_envs": n}
        preps = {}
        for name, (env, reset_mode) in variants.items():
            # drawn pixels are ~10x slower: a smaller call keeps its repeats affordable
            slow = name == "fused_pixels_drawn"
            target = args.target_steps // (8 if slow else 1)
            t = scan_length(n, target, lo // (4 if slow else 1), hi)
            preps[name] = prepare_jax(env, n, t, reset_mode)
        row.update(bench_interleaved(preps, args.repeats))
        for name in variants:
            r = row[name]
            print(
                f"  {name:14s} envs={n:6d}  {fmt_rate(r['median']):>8s} steps/s  compile {r['compile_s']:.1f}s",
                flush=True,
            )
        for name in variants:
            if name == "env":
                continue
            pr = paired_ratio(row[name], row["env"])
            row[name]["ratio_to_env"] = pr["median"]
            row[name]["ratio_to_env_range"] = [pr["min"], pr["max"]]
        jax_rows.append(row)

    overhead: dict[str, Any] = {}
    if "fused_state" in variants and not args.no_overhead:
        n = 4096 if 4096 in args.envs else args.envs[-1]
        overhead = overhead_analysis(
            task,
            variants["fused_state"][0],
            n,
            scan_length(n, args.target_steps, lo, hi),
            args.repeats,
        )
        overhead["num_envs"] = n
        o = overhead["summary"]
        print(
            f"  overhead at {n} envs: bare step {fmt_rate(overhead['env_no_reset']['median'])} steps/s, "
            f"auto-reset takes {o['auto_reset_share_of_env_time']:.0%} of env time; "
            f"observe+programs cost {o['reward_cost_vs_env_step']:.1%} of a bare step",
            flush=True,
        )

    farama: dict[str, Any] = {}
    if not args.no_farama:
        farama["loop"] = bench_farama_loop(args.farama_seconds, args.repeats)
        farama["loop_no_reward"] = bench_farama_loop(
            args.farama_seconds, args.repeats, with_reward=False
        )
        if args.farama_vector:
            farama["sync_vector"] = bench_farama_vector(
                args.farama_vector, "sync", args.farama_seconds, args.repeats
            )
            farama["async_vector_2"] = bench_farama_vector(
                2, "async", args.farama_seconds, args.repeats
            )
        for k, v in farama.items():
            print(f"  farama {k:16s} {fmt_rate(v['median']):>8s} steps/s", flush=True)

    encoder: dict[str, Any] = {}
    if not args.no_encoder:
        encoder = bench_encoder(
            args.encoder_batch, max(2, args.repeats // 2 + 1) if not args.quick else 1
        )
        print(
            f"  encoder ViT-B/32  {fmt_rate(encoder['median']):>8s} images/s  compile {encoder['compile_s']:.1f}s"
        )

    # ratios of the fused reward to the alternatives, at every size
    best_farama = max(
        (v["median"] for k, v in farama.items() if k != "loop_no_reward"), default=None
    )
    for row in jax_rows:
        for mode in args.modes:
            r = row[f"fused_{mode}"]
            if farama:
                r["ratio_to_farama_loop"] = r["median"] / farama["loop"]["median"]
                r["ratio_to_farama_best"] = r["median"] / best_farama
            if encoder:
                r["ratio_to_encoder"] = r["median"] / encoder["median"]

    targets = check_targets(jax_rows, farama, encoder)
    payload = {
        "benchmark": "throughput",
        "task": TASK_ID,
        "command": command(__file__, argv),
        "quick": args.quick,
        "note": args.note,
        "machine": machine(),
        "specs": {m: str(spec_path(m).relative_to(ROOT)) for m in args.modes},
        "method": (
            "JAX rows: jit(scan(vmap(step))) with random actions and auto-reset from a reset pool "
            "drawn once per timed call (car_jax.rl.resets; env_step_reset: a fresh reset of every "
            "env every step, the old way); fused_pixels reads cell ids through the lazy frame "
            "(fused_pixels_drawn: drawn frames, the old way); the scan returns the summed reward "
            "so nothing is dropped. "
            "Compile time (trace+XLA) is reported apart; steady-state times are blocked until ready, "
            "one warm-up call each, then `repeats` rounds timing env, fused state and fused pixels "
            "in turn (interleaved, so they share the machine's load); median and "
            "spread=(max-min)/median; ratio_to_env is the median of per-round ratios. "
            "Farama rows: gymnasium MiniGrid with the same three sub-task checks in Python, random "
            "actions, time-boxed repeats. " + NOTE_ENCODER
        ),
        "jax": jax_rows,
        "farama": farama,
        "encoder": encoder,
        "overhead": overhead,
        "targets": targets,
    }
    print_table(payload, args.modes)
    path = write_json(args.out, payload)
    print(f"\nwrote {path}")
    if not args.no_plot:
        print(f"wrote {plot_throughput(payload, args.out.with_suffix('.png'))}")
    md = args.out.with_suffix(".md")
    md.write_text(render_markdown(payload), encoding="utf-8")
    print(f"wrote {md}")
    return 0


def check_targets(rows: list[dict[str, Any]], farama: dict, encoder: dict) -> dict[str, Any]:
    """The three stated targets, measured at 4096 envs (or the largest size run)."""
    if not rows or "fused_state" not in rows[0]:
        return {}
    at = next((r for r in rows if r["num_envs"] == 4096), rows[-1])
    fused = at["fused_state"]
    out: dict[str, Any] = {"at_num_envs": at["num_envs"]}
    out["fused_state_vs_env"] = {
        "value": fused["ratio_to_env"],
        "target": TARGETS["fused_state_vs_env_at_4096"],
    }
    if "fused_pixels" in at:
        out["fused_pixels_vs_env"] = {
            "value": at["fused_pixels"]["ratio_to_env"],
            "target": TARGETS["fused_pixels_vs_env_at_4096"],
        }
    if farama:
        out["fused_state_vs_farama_loop"] = {
            "value": fused["ratio_to_farama_loop"],
            "target": TARGETS["fused_vs_farama_loop"],
        }
    if encoder:
        out["fused_state_vs_encoder"] = {
            "value": fused["ratio_to_encoder"],
            "target": TARGETS["fused_vs_encoder"],
        }
    for v in out.values():
        if isinstance(v, dict):
            v["met"] = bool(v["value"] >= v["target"])
    return out


def print_table(payload: dict[str, Any], modes: list[str]) -> None:
    """A plain-text table of the run."""
    m = payload["machine"]
    print(
        f"\n{payload['task']} on {m['cpu_model']} ({m['cpu_cores']} cores), jax {m['jax_version']} {m['backend']}"
    )
    head = f"{'envs':>6} | {'env alone':>10}"
    for mode in modes:
        head += f" | {'+code ' + mode:>14} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for row in payload["jax"]:
        line = f"{row['num_envs']:>6} | {fmt_rate(row['env']['median']):>10}"
        for mode in modes:
            r = row[f"fused_{mode}"]
            line += f" | {fmt_rate(r['median']):>14} {r['ratio_to_env']:>6.2f}"
        print(line)
    for row in payload["jax"]:
        for name in ("env_step_reset", "fused_pixels_drawn"):
            if name in row:
                r = row[name]
                print(
                    f"{row['num_envs']:>6} envs: {name} {fmt_rate(r['median'])} steps/s "
                    f"(ratio to env {r['ratio_to_env']:.2f}, compile {r['compile_s']:.1f}s)"
                )
    for k, v in payload["farama"].items():
        print(f"Farama MiniGrid {k} (n={v['num_envs']}): {fmt_rate(v['median'])} steps/s")
    if payload["encoder"]:
        print(f"ViT-B/32-sized encoder per step: {fmt_rate(payload['encoder']['median'])} images/s")
        print(NOTE_ENCODER)
    if payload["overhead"]:
        o = payload["overhead"]
        print(
            f"Overhead at {o['num_envs']} envs (state mode): env step without auto-reset "
            f"{fmt_rate(o['env_no_reset']['median'])} steps/s, with the fused reward "
            f"{fmt_rate(o['fused_state_no_reset']['median'])} "
            f"(ratio {o['fused_state_no_reset']['ratio_to_env_no_reset']:.2f}); auto-reset takes "
            f"{o['summary']['auto_reset_share_of_env_time']:.0%} of the env rows' time; observe + programs "
            f"alone {fmt_rate(o['completion_only']['median'])} states/s"
        )
    for name, t in payload["targets"].items():
        if isinstance(t, dict):
            verdict = "met" if t["met"] else "MISSED"
            print(
                f"target {name} at {payload['targets']['at_num_envs']} envs: {t['value']:.3g} (>= {t['target']:g}) {verdict}"
            )


def render_markdown(payload: dict[str, Any]) -> str:
    """The README table of a run: steps/s per env count and the ratios, plus the reference rows."""
    m = payload["machine"]
    modes = [k[len("fused_") :] for k in payload["jax"][0] if k.startswith("fused_")]
    lines = [
        f"MiniGrid DoorKey-8x8, {m['cpu_model']} ({m['cpu_cores']} cores), JAX {m['jax_version']} "
        f"({m['backend']}); median of repeats, steps/s.",
        "",
        "| parallel envs | env alone | "
        + " | ".join(f"+ code reward ({md}) | ratio" for md in modes)
        + " |",
        "|---:|---:|" + "---:|---:|" * len(modes),
    ]
    for row in payload["jax"]:
        cells = [str(row["num_envs"]), fmt_rate(row["env"]["median"])]
        for md in modes:
            r = row[f"fused_{md}"]
            cells += [fmt_rate(r["median"]), f"{r['ratio_to_env']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    at = payload["targets"].get("at_num_envs")
    fused = next((r["fused_state"] for r in payload["jax"] if r["num_envs"] == at), None)
    ref = []
    names = {
        "loop": "Farama MiniGrid + Python checks, Python loop",
        "loop_no_reward": "Farama MiniGrid alone, Python loop",
        "sync_vector": "Farama MiniGrid + Python checks, SyncVectorEnv",
        "async_vector_2": "Farama MiniGrid + Python checks, AsyncVectorEnv",
    }
    for k, v in payload["farama"].items():
        ratio = f"{fused['median'] / v['median']:,.0f}x" if fused else "-"
        ref.append(
            f"| {names.get(k, k)} ({v['num_envs']} env(s)) | {fmt_rate(v['median'])} | {ratio} |"
        )
    if payload["encoder"]:
        e = payload["encoder"]
        ratio = f"{fused['median'] / e['median']:,.0f}x" if fused else "-"
        ref.append(
            f"| ViT-B/32-sized image encoder on every frame (cost only) | {fmt_rate(e['median'])} | {ratio} |"
        )
    if ref:
        lines += [
            f"| alternative | steps/s | fused code reward (state, {at} envs) is |",
            "|---|---:|---:|",
            *ref,
            "",
        ]
    return "\n".join(lines)


def plot_throughput(payload: dict[str, Any], path: Path) -> Path:
    """steps/s vs parallel envs for the JAX rows, with the Farama loop and the encoder as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["jax"]
    xs = [r["num_envs"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = {
        "env": "env alone",
        "fused_state": "+ code reward (state)",
        "fused_pixels": "+ code reward (pixels)",
    }
    for key, label in labels.items():
        if key in rows[0]:
            ys = [r[key]["median"] for r in rows]
            err = [
                [r[key]["median"] - r[key]["min"] for r in rows],
                [r[key]["max"] - r[key]["median"] for r in rows],
            ]
            ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=2, label=label)
    if payload["farama"]:
        ax.axhline(
            payload["farama"]["loop"]["median"],
            color="grey",
            ls="--",
            label="Farama MiniGrid, Python loop",
        )
    if payload["encoder"]:
        ax.axhline(
            payload["encoder"]["median"],
            color="black",
            ls=":",
            label="ViT-B/32 encoder per step (cost)",
        )
    m = payload["machine"]
    ax.set(xscale="log", yscale="log", xlabel="parallel envs", ylabel="steps / s")
    ax.set_title(
        f"MiniGrid DoorKey-8x8 throughput\n{m['cpu_model']}, {m['cpu_cores']} cores, JAX {m['jax_version']}",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
