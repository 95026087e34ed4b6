"""Farama MiniGrid DoorKey-8x8 with the same three sub-task checks written in Python (the baseline).

Time-boxed loops with random actions: one env in a Python loop, and gymnasium's vector envs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

FARAMA_ID = "MiniGrid-DoorKey-8x8-v0"


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
