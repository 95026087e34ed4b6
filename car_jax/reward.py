"""Stage 3: fuse compiled reward programs into the jitted, vectorized env step.

`CodeReward` wraps a Task. Its state carries, per env, the index of the next sub-task; when that
sub-task's program becomes true the agent earns its bonus once and the index moves on. The env's
own reward is kept and added. `shaping="potential"` instead pays gamma * Phi(s') - Phi(s) with
Phi = fraction of sub-tasks done, which provably keeps the optimal policy (Ng et al., 1999).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from car_jax.errors import UserError
from car_jax.sprite_inputs import observe_cells, reads_cells

SHAPINGS = ("bonus", "potential")


class CodeRewardState(struct.PyTreeNode):
    """The wrapped env's state plus the index of the next sub-task to complete."""

    env_state: Any
    next_subtask: jax.Array  # int32 scalar in [0, K]


class CodeReward:
    """A Task wrapper whose reward adds one-time sub-task bonuses from compiled programs.

    Args:
      task: the Task to wrap (reset/step/observe/success).
      compiled: the `CompiledSpec` of the verified programs, compiled for `mode`'s inputs.
      mode: which program inputs the programs read ("state" or "pixels").
      bonus: bonus per sub-task (one float, or one per sub-task).
      code_weight: weight of the code reward (0 turns it off but keeps sub-task logging).
      env_weight: weight of the env's own reward.
      shaping: "bonus" (one-time bonuses) or "potential" (gamma * Phi(s') - Phi(s), scaled by
        `code_weight`).
      gamma: discount used by potential shaping; should equal the learner's.
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
        bonus_arr = jnp.broadcast_to(jnp.asarray(bonus, jnp.float32), (k,))
        self.task = task
        self.compiled = compiled
        self.mode = mode
        self.num_subtasks = k
        self.subtask_names = tuple(p.name for p in compiled.programs)
        self.bonus = bonus_arr
        self.code_weight = float(code_weight)
        self.env_weight = float(env_weight)
        self.shaping = shaping
        self.gamma = float(gamma)
        # The Task surface the trainer needs, passed through.
        self.id = task.id
        self.params = task.params
        self.action = task.action
        self.obs_shape = task.obs_shape
        self.obs_dtype = task.obs_dtype
        self.max_steps = task.max_steps
        self._reads_cells = reads_cells(compiled, task, mode)

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, CodeRewardState]:
        """Reset the env; the sub-task index starts at 0."""
        obs, env_state = self.task.reset(key, params)
        return obs, CodeRewardState(env_state, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: CodeRewardState, action: jax.Array, params: Any):
        """Step the env and add the code reward; info carries per-sub-task completion flags."""
        obs, env_state, env_reward, terminated, truncated, info = self.task.step(
            key, state.env_state, action, params
        )
        k = self.num_subtasks
        idx = state.next_subtask
        # NOTE: all K programs are evaluated and the current one selected: a gather under vmap
        # is cheaper than a per-env lax.switch, and K is small.
        # NOTE: programs compiled with the task's sprite sheets read cell ids, not drawn frames.
        if self._reads_cells:
            obs_now = observe_cells(self.task, env_state, self.mode)
        else:
            obs_now = self.task.observe(env_state, self.mode)
        done_now = self.compiled.completion(obs_now)
        current = jnp.where(idx < k, done_now[jnp.minimum(idx, k - 1)], False)
        new_idx = idx + current.astype(jnp.int32)
        if self.shaping == "bonus":
            code = jnp.where(current, self.bonus[jnp.minimum(idx, k - 1)], 0.0)
        else:
            phi, phi_next = idx / k, new_idx / k
            code = self.gamma * phi_next - phi
        code = self.code_weight * code.astype(jnp.float32)
        env_reward = jnp.asarray(env_reward, jnp.float32)
        reward = self.env_weight * env_reward + code
        info = dict(info)
        info.update(
            env_reward=env_reward,
            code_reward=code,
            subtask_done=jnp.arange(k) < new_idx,
            success=self.task.success(env_state),
        )
        return obs, CodeRewardState(env_state, new_idx), reward, terminated, truncated, info
