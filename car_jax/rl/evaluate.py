"""Evaluation inside the compiled program: fresh episodes, greedy and stochastic, ground truth.

`Evaluator(env, apply_fn, action_kind, ...)` runs `episodes` fresh episodes with the greedy policy
(argmax / Gaussian mean) and as many with the sampling policy, side by side in one batch. They
start from their own resets, drawn from the key they are given (never the training envs' states
or keys), run without auto-reset until each one ends, and are scored by the task's ground-truth
success. The training loop calls it every `eval_every` updates (`PPOTrainer.run`).

Metrics (per policy p in greedy, stochastic): `eval_<p>_success` (fraction of episodes that
succeeded), `eval_<p>_return` (the env's own return: `info["env_reward"]` where the env reports
one, e.g. the sparse reward under `CodeReward`, else the reward), `eval_<p>_length`, and
`eval_<p>_subtask_rate[K]` where the env reports `info["subtask_done"]`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from car_jax.rl import networks

POLICIES = ("greedy", "stochastic")


class _EvalCarry(flax.struct.PyTreeNode):
    """The loop state of a batch of evaluation episodes ([2E, ...] leaves)."""

    obs: jax.Array
    state: Any
    key: jax.Array
    t: jax.Array  # int32 scalar: steps taken
    done: jax.Array  # [2E] bool: episode over
    returns: jax.Array  # [2E] float32
    lengths: jax.Array  # [2E] int32
    success: jax.Array  # [2E] bool: succeeded at some step of the episode
    subtasks: jax.Array  # [2E, K] bool: sub-tasks done when the episode ended


class Evaluator:
    """Runs greedy and stochastic evaluation episodes for one env; `__call__` is jittable.

    Args:
      env: a Task-like env (reset/step, `action`, `max_steps`).
      apply_fn: `(params, obs [B, ...]) -> (policy params, value)`.
      action_kind: "discrete" | "continuous".
      env_action: maps sampled actions to env actions (e.g. clipping to the bounds).
      episodes: episodes per policy per evaluation.
      success_fn: `(info, state) -> bool` ground-truth success after a step, or None.
      num_subtasks: length of `info["subtask_done"]` (0 when the env reports none).
      max_steps: step cap for the episodes (default: the env's `max_steps`).
    """

    def __init__(
        self,
        env: Any,
        apply_fn: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
        action_kind: str,
        env_action: Callable[[jax.Array], jax.Array],
        episodes: int,
        success_fn: Callable[[dict, Any], jax.Array] | None,
        num_subtasks: int = 0,
        max_steps: int | None = None,
    ):
        self.env = env
        self.apply_fn = apply_fn
        self.action_kind = action_kind
        self.env_action = env_action
        self.episodes = int(episodes)
        self.success_fn = success_fn
        self.num_subtasks = int(num_subtasks)
        self.max_steps = int(max_steps or getattr(env, "max_steps", 0) or 1000)

    def __call__(self, params: Any, env_params: Any, key: jax.Array) -> dict[str, jax.Array]:
        """Evaluate `params` on fresh episodes drawn from `key`; returns the `eval_*` metrics."""
        env, n = self.env, 2 * self.episodes
        # NOTE: the first half of the batch acts greedily, the second half samples.
        greedy = jnp.arange(n) < self.episodes
        key, k_reset = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, n), env_params
        )
        carry = _EvalCarry(
            obs=obs,
            state=state,
            key=key,
            t=jnp.zeros((), jnp.int32),
            done=jnp.zeros((n,), bool),
            returns=jnp.zeros((n,), jnp.float32),
            lengths=jnp.zeros((n,), jnp.int32),
            success=jnp.zeros((n,), bool),
            subtasks=jnp.zeros((n, self.num_subtasks), bool),
        )

        def running(c: _EvalCarry) -> jax.Array:
            return jnp.logical_and(c.t < self.max_steps, ~jnp.all(c.done))

        def step(c: _EvalCarry) -> _EvalCarry:
            key, k_act, k_step = jax.random.split(c.key, 3)
            pi, _ = self.apply_fn(params, c.obs)
            sampled = networks.sample_action(self.action_kind, pi, k_act)
            mode = networks.greedy_action(self.action_kind, pi)
            pick = greedy.reshape(greedy.shape + (1,) * (sampled.ndim - 1))
            action = self.env_action(jnp.where(pick, mode, sampled))
            obs, state, reward, terminated, truncated, info = jax.vmap(
                env.step, in_axes=(0, 0, 0, None)
            )(jax.random.split(k_step, n), c.state, action, env_params)
            active = ~c.done
            own_reward = info.get("env_reward", reward).astype(jnp.float32)
            success_now = c.success
            if self.success_fn is not None:
                success_now = c.success | (active & self.success_fn(info, state))
            subtasks = c.subtasks
            if self.num_subtasks:
                subtasks = jnp.where(active[:, None], info["subtask_done"], c.subtasks)
            return _EvalCarry(
                obs=obs,
                state=state,
                key=key,
                t=c.t + 1,
                done=c.done | jnp.logical_or(terminated, truncated),
                returns=c.returns + jnp.where(active, own_reward, 0.0),
                lengths=c.lengths + active.astype(jnp.int32),
                success=success_now,
                subtasks=subtasks,
            )

        # NOTE: a while_loop, not a scan of max_steps: it stops once every episode has ended.
        # Finished envs keep stepping (their results are masked out); nothing auto-resets.
        c = jax.lax.while_loop(running, step, carry)
        out = {}
        for name, half in zip(POLICIES, (slice(0, self.episodes), slice(self.episodes, n))):
            if self.success_fn is not None:
                out[f"eval_{name}_success"] = c.success[half].astype(jnp.float32).mean()
            out[f"eval_{name}_return"] = c.returns[half].mean()
            out[f"eval_{name}_length"] = c.lengths[half].astype(jnp.float32).mean()
            if self.num_subtasks:
                out[f"eval_{name}_subtask_rate"] = c.subtasks[half].astype(jnp.float32).mean(0)
        return out

    def blank(self, params: Any, env_params: Any, key: jax.Array) -> dict[str, jax.Array]:
        """NaN metrics with the shapes of `__call__`'s, for updates without an evaluation."""
        shapes = jax.eval_shape(self, params, env_params, key)
        return {k: jnp.full(s.shape, jnp.nan, s.dtype) for k, s in shapes.items()}
