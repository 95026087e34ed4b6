"""Stage 3: fuse compiled reward programs into the jitted, vectorized env step.

`CodeReward` wraps a Task. Its state carries, per env, the index of the next sub-task. On every
step the run of consecutive sub-tasks that are complete from that index on is paid, each once
(several can complete on one step, the terminal step included), and the index moves past them; it
restarts at 0 with every episode (every `reset`, so also PPO's auto-resets). The env's own reward
is kept and added.

Two ways to pay (`shaping`):
- `"bonus"`: `bonus[j]` once when sub-task j completes. This changes the task: the optimal policy
  of env reward + bonuses can differ from the env reward's (e.g. grab the bonuses and stop).
- `"potential"`: F = gamma * Phi(s') - Phi(s) with Phi(s) = the bonuses of the sub-tasks done so
  far and Phi = 0 once the episode terminates. Over any episode that terminates the discounted
  sum of F is -Phi(s0) = 0, so the optimal policy is the env reward's (Ng et al., 1999), provided
  gamma is the learner's: PPO binds its own (traced) gamma with `with_discount`.

`progress_obs=True` adds the sub-task progress (the next sub-task's index, one-hot) to the
policy's observation, so the code reward is Markov in what the agent sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from car_jax.errors import UserError
from car_jax.sprite_inputs import observe_cells, reads_cells

SHAPINGS = ("bonus", "potential")


class CodeRewardState(struct.PyTreeNode):
    """The wrapped env's state plus the index of the next sub-task to complete."""

    env_state: Any
    next_subtask: jax.Array  # int32 scalar in [0, K]


class CodeRewardParams(struct.PyTreeNode):
    """The wrapped env's params plus the discount potential shaping uses (traced)."""

    env: Any
    gamma: jax.Array  # float32 scalar


class CodeReward:
    """A Task wrapper whose reward adds sub-task rewards from compiled programs.

    Args:
      task: the Task to wrap (reset/step/observe/success).
      compiled: the `CompiledSpec` of the verified programs, compiled for `mode`'s inputs.
      mode: which program inputs the programs read ("state" or "pixels").
      bonus: reward per sub-task (one float, or one per sub-task); under potential shaping,
        Phi(s) is the sum of the bonuses of the sub-tasks done.
      code_weight: weight of the code reward (0 turns it off but keeps sub-task logging).
      env_weight: weight of the env's own reward.
      shaping: "bonus" (one-time bonuses) or "potential" (gamma * Phi(s') - Phi(s), Phi = 0 at
        termination, scaled by `code_weight`).
      gamma: discount of potential shaping outside a trainer; PPO replaces it with its own.
      progress_obs: add the next sub-task's index (one-hot) to the policy observation.
    """

    def __init__(
        self,
        task,
        compiled,
        mode: str = "state",
        bonus: float | Sequence[float] = 0.5,
        code_weight: float = 1.0,
        env_weight: float = 1.0,
        shaping: str = "bonus",
        gamma: float = 0.99,
        progress_obs: bool = False,
    ):
        if shaping not in SHAPINGS:
            raise UserError(f"unknown shaping {shaping!r}; expected one of {', '.join(SHAPINGS)}")
        if mode not in task.modes:
            raise UserError(f"task {task.id!r} has no input mode {mode!r}; it has {task.modes}")
        k = len(compiled.programs)
        if k == 0:
            raise UserError("a reward spec needs at least one program")
        if not isinstance(bonus, int | float) and len(bonus) != k:
            raise UserError(f"got {len(bonus)} bonuses for {k} sub-tasks; give one or {k}")
        if not 0.0 <= float(gamma) <= 1.0:
            raise UserError(f"CodeReward gamma must lie in [0, 1], got {gamma!r}")
        bonus_arr = jnp.broadcast_to(jnp.asarray(bonus, jnp.float32), (k,))
        self.task = task
        self.compiled = compiled
        self.mode = mode
        self.num_subtasks = k
        self.subtask_names = tuple(p.name for p in compiled.programs)
        self.bonus = bonus_arr
        # Phi before sub-task j: the bonuses of sub-tasks 0..j-1 ([K + 1], Phi[0] = 0).
        self.potential = jnp.concatenate([jnp.zeros((1,), jnp.float32), jnp.cumsum(bonus_arr)])
        self.code_weight = float(code_weight)
        self.env_weight = float(env_weight)
        self.shaping = shaping
        self.gamma = float(gamma)
        self.progress_obs = bool(progress_obs)
        # The Task surface the trainer needs, passed through (params wrapped with the discount).
        self.id = task.id
        self.family = getattr(task, "family", "")
        self.params = CodeRewardParams(task.params, jnp.asarray(gamma, jnp.float32))
        self.action = task.action
        self.max_steps = task.max_steps
        self.obs_shape, self.obs_dtype = _progress_obs_shape(
            tuple(task.obs_shape), task.obs_dtype, k, self.progress_obs
        )
        self._reads_cells = reads_cells(compiled, task, mode)

    def with_discount(self, params: CodeRewardParams, gamma: jax.Array) -> CodeRewardParams:
        """`params` with potential shaping's discount replaced (PPO passes its traced gamma)."""
        return params.replace(gamma=jnp.asarray(gamma, jnp.float32))

    def success(self, state: CodeRewardState) -> jax.Array:
        """The wrapped task's ground-truth success."""
        return self.task.success(state.env_state)

    def reset(self, key: jax.Array, params: CodeRewardParams) -> tuple[jax.Array, CodeRewardState]:
        """Reset the env; the sub-task index starts at 0."""
        obs, env_state = self.task.reset(key, params.env)
        idx = jnp.zeros((), jnp.int32)
        return self._observation(obs, idx), CodeRewardState(env_state, idx)

    def advance(self, idx: jax.Array, done_now: jax.Array) -> jax.Array:
        """The new index: past every consecutive sub-task complete from `idx` on (bool[K] flags)."""
        # Sub-tasks before idx count as done; the new index is the length of the leading run.
        done_or_past = done_now | (jnp.arange(self.num_subtasks) < idx)
        return jnp.cumprod(done_or_past.astype(jnp.int32)).sum().astype(jnp.int32)

    def step(self, key: jax.Array, state: CodeRewardState, action: jax.Array, params: Any):
        """Step the env and add the code reward; info carries per-sub-task completion flags."""
        obs, env_state, env_reward, terminated, truncated, info = self.task.step(
            key, state.env_state, action, params.env
        )
        idx = state.next_subtask
        # NOTE: all K programs are evaluated every step; K is small and a gather under vmap is
        # cheaper than a per-env lax.switch.
        # NOTE: programs compiled with the task's sprite sheets read cell ids, not drawn frames.
        if self._reads_cells:
            obs_now = observe_cells(self.task, env_state, self.mode)
        else:
            obs_now = self.task.observe(env_state, self.mode)
        done_now = self.compiled.completion(obs_now)
        new_idx = self.advance(idx, done_now)
        if self.shaping == "bonus":
            code = self.potential[new_idx] - self.potential[idx]  # every sub-task passed, once
        else:
            phi_next = jnp.where(terminated, 0.0, self.potential[new_idx])
            code = params.gamma * phi_next - self.potential[idx]
        code = self.code_weight * code.astype(jnp.float32)
        env_reward = jnp.asarray(env_reward, jnp.float32)
        reward = self.env_weight * env_reward + code
        info = dict(info)
        info.update(
            env_reward=env_reward,
            code_reward=code,
            subtask_done=jnp.arange(self.num_subtasks) < new_idx,
            success=self.task.success(env_state),
        )
        new_state = CodeRewardState(env_state, new_idx)
        return self._observation(obs, new_idx), new_state, reward, terminated, truncated, info

    def _observation(self, obs: jax.Array, idx: jax.Array) -> jax.Array:
        """The policy observation, with the sub-task progress added when `progress_obs`."""
        if not self.progress_obs:
            return obs
        return add_progress(obs, idx, self.num_subtasks)


def _progress_obs_shape(
    shape: tuple[int, ...], dtype: str, k: int, progress: bool
) -> tuple[tuple[int, ...], str]:
    """Observation shape and dtype after `add_progress` (unchanged when `progress` is off)."""
    if not progress:
        return shape, dtype
    if len(shape) == 3 and np.issubdtype(np.dtype(dtype), np.integer):
        return (*shape[:2], shape[2] + 1), dtype
    if len(shape) == 3:
        return (*shape[:2], shape[2] + k + 1), dtype
    if len(shape) == 1:
        return (shape[0] + k + 1,), dtype
    raise UserError(
        f"progress_obs supports vector [D] or grid [H, W, C] observations, got shape {shape}"
    )


def add_progress(obs: jax.Array, idx: jax.Array, k: int) -> jax.Array:
    """Append the progress to one observation.

    Integer grids [H, W, C] get one more channel holding the index (the network embeds it);
    float/bool grids get K + 1 one-hot planes; vectors [D] get the one-hot [K + 1] appended.
    """
    if obs.ndim == 3 and jnp.issubdtype(obs.dtype, jnp.integer):
        plane = jnp.full((*obs.shape[:2], 1), idx, obs.dtype)
        return jnp.concatenate([obs, plane], axis=-1)
    one_hot = (jnp.arange(k + 1) == idx).astype(obs.dtype)
    if obs.ndim == 3:
        planes = jnp.broadcast_to(one_hot, (*obs.shape[:2], k + 1))
        return jnp.concatenate([obs, planes], axis=-1)
    return jnp.concatenate([obs, one_hot])
