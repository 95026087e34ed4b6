"""Adapter from a gymnax environment to the Task contract (shared by classic control and MinAtar).

gymnax's own `step` auto-resets; a Task must not. We call `step_env` / `reset_env` directly,
read the time limit from the env state's step counter and keep terminated and truncated apart.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.base import Task


@struct.dataclass
class GymnaxTaskState:
    """A gymnax env state plus the episode's summed env reward (`score`)."""

    env: Any
    score: jax.Array  # float32 scalar: sum of the env rewards so far
    last_reward: jax.Array  # float32 scalar: reward of the last transition (0 after reset)


class GymnaxTask(Task):
    """A Task over one gymnax environment; subclasses add inputs, renderer, success, expert."""

    env: Any = None

    def __init__(self) -> None:
        self.max_steps = int(self.params.max_steps_in_episode)

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, GymnaxTaskState]:
        """Start an episode (gymnax `reset_env`)."""
        obs, env_state = self.env.reset_env(key, params)
        state = GymnaxTaskState(env_state, jnp.float32(0.0), jnp.float32(0.0))
        return self._policy_obs(obs), state

    def step(self, key: jax.Array, state: GymnaxTaskState, action: jax.Array, params: Any):
        """One transition without auto-reset; truncated = step count reached the time limit."""
        obs, env_state, reward, terminated, info = self.env.step_env(key, state.env, action, params)
        reward = jnp.asarray(reward, jnp.float32).reshape(())
        terminated = jnp.asarray(terminated, bool).reshape(())
        # NOTE: gymnax's `time` is a Python int after reset_env and an int32 array after a step.
        truncated = jnp.asarray(env_state.time >= params.max_steps_in_episode).reshape(())
        new = GymnaxTaskState(env_state, state.score + reward, reward)
        info = {"discount": info.get("discount", 1.0 - terminated)}
        return self._policy_obs(obs), new, reward, terminated, truncated, info

    def _policy_obs(self, obs: jax.Array) -> jax.Array:
        return jnp.asarray(obs, jnp.float32)

    def time(self, state: GymnaxTaskState) -> jax.Array:
        """The step count of the episode (int32)."""
        return jnp.asarray(state.env.time, jnp.int32)
