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
policy's observation, so the code reward is Markov in what the agent sees. `carried_obs=True`
draws what the agent carries into its observation (`Task.show_carried`; MiniGrid), which the
task's own view may hide; it is a property of the observation, so it applies whatever pays.

Several specs: `CodeReward(task, [compiled_a, compiled_b, ...])` holds every spec's programs,
padded to the largest sub-task count with sub-tasks that are never done (the index never passes
them); `params.spec` (a traced int32, bound with `with_spec`) picks the spec that pays. One spec
is the case of one row, so the reward mechanics above live in this one class
(`car_jax.multi.train_specs` trains several specs side by side with it).
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
    """The wrapped env's params, the discount potential shaping uses and the paying spec (traced)."""

    env: Any
    gamma: jax.Array  # float32 scalar
    spec: jax.Array  # int32 scalar: which spec's programs pay (0 with one spec)


class CodeReward:
    """A Task wrapper whose reward adds sub-task rewards from compiled programs.

    Args:
      task: the Task to wrap (reset/step/observe/success).
      compiled: the `CompiledSpec` of the verified programs, compiled for `mode`'s inputs, or a
        sequence of them (several specs; `params.spec` picks the one that pays).
      mode: which program inputs the programs read ("state" or "pixels").
      bonus: reward per sub-task (one float, or one per sub-task of every spec); under potential
        shaping, Phi(s) is the sum of the bonuses of the sub-tasks done.
      code_weight: weight of the code reward (0 turns it off but keeps sub-task logging); one
        float, or one per spec.
      env_weight: weight of the env's own reward.
      shaping: "bonus" (one-time bonuses) or "potential" (gamma * Phi(s') - Phi(s), Phi = 0 at
        termination, scaled by `code_weight`).
      gamma: discount of potential shaping outside a trainer; PPO replaces it with its own.
      progress_obs: add the next sub-task's index (one-hot over the largest sub-task count, so
        every spec's policy sees the same shape) to the policy observation; a spec whose code
        weight is 0 (a sparse baseline) is shown index 0 throughout, so its policy gets nothing
        from the programs.
      carried_obs: draw the carried object into the policy observation with the task's
        `show_carried` (refused for a task without one).
    """

    def __init__(
        self,
        task,
        compiled,
        mode: str = "state",
        bonus: float | Sequence[float] = 0.5,
        code_weight: float | Sequence[float] = 1.0,
        env_weight: float = 1.0,
        shaping: str = "bonus",
        gamma: float = 0.99,
        progress_obs: bool = False,
        carried_obs: bool = False,
    ):
        if shaping not in SHAPINGS:
            raise UserError(f"unknown shaping {shaping!r}; expected one of {', '.join(SHAPINGS)}")
        if mode not in task.modes:
            raise UserError(f"task {task.id!r} has no input mode {mode!r}; it has {task.modes}")
        specs = (compiled,) if hasattr(compiled, "programs") else tuple(compiled)
        if not specs:
            raise UserError("CodeReward needs at least one compiled spec")
        counts = tuple(len(c.programs) for c in specs)
        if 0 in counts:
            which = "a reward spec" if len(specs) == 1 else f"spec {counts.index(0)}"
            raise UserError(f"{which} has no programs; a reward spec needs at least one program")
        if not isinstance(bonus, int | float):
            for n in counts:
                if len(bonus) != n:
                    raise UserError(f"got {len(bonus)} bonuses for {n} sub-tasks; give one or {n}")
        if np.ndim(code_weight) and len(code_weight) != len(specs):
            raise UserError(f"got {len(code_weight)} code weights for {len(specs)} specs")
        weights = np.broadcast_to(np.asarray(code_weight, np.float32).reshape(-1), (len(specs),))
        if carried_obs:
            check_carried(task, "carried_obs")
        if not 0.0 <= float(gamma) <= 1.0:
            raise UserError(f"CodeReward gamma must lie in [0, 1], got {gamma!r}")
        k = max(counts)
        # Bonus of sub-task j of spec s ([S, K]); padded sub-tasks pay nothing.
        bonus_rows = np.zeros((len(specs), k), np.float32)
        for s, n in enumerate(counts):
            bonus_rows[s, :n] = np.broadcast_to(np.asarray(bonus, np.float32), (n,))
        self.task = task
        self.specs = specs
        self.mode = mode
        self.num_specs = len(specs)
        self.subtask_counts = counts
        self.num_subtasks = k
        self.bonus = jnp.asarray(bonus_rows)
        # Phi before sub-task j of spec s: its bonuses of sub-tasks 0..j-1 ([S, K + 1], Phi = 0
        # before the first).
        self.potential = jnp.concatenate(
            [jnp.zeros((len(specs), 1), jnp.float32), jnp.cumsum(self.bonus, axis=1)], axis=1
        )
        self.code_weights = jnp.asarray(weights, jnp.float32)
        self.env_weight = float(env_weight)
        self.shaping = shaping
        self.progress_obs = bool(progress_obs)
        self.carried_obs = bool(carried_obs)
        # The Task surface the trainer needs, passed through (params wrapped with the discount).
        self.id = task.id
        self.family = getattr(task, "family", "")
        self.params = CodeRewardParams(
            task.params, jnp.asarray(gamma, jnp.float32), jnp.zeros((), jnp.int32)
        )
        self.action = task.action
        self.max_steps = task.max_steps
        self.obs_shape, self.obs_dtype = _progress_obs_shape(
            tuple(task.obs_shape), task.obs_dtype, k, self.progress_obs
        )
        # Trailing grid channels that hold one value over the whole grid: the progress plane
        # `add_progress` gives an integer grid (the torso can embed it once: embed_constant_once).
        integer_grid = len(task.obs_shape) == 3 and np.issubdtype(
            np.dtype(task.obs_dtype), np.integer
        )
        self.obs_constant_channels = int(self.progress_obs and integer_grid)
        # Per spec: whether its programs read sprite-grid inputs as cell ids (lazy frames).
        self._reads_cells = tuple(reads_cells(c, task, mode) for c in specs)

    def with_discount(self, params: CodeRewardParams, gamma: jax.Array) -> CodeRewardParams:
        """`params` with potential shaping's discount replaced (PPO passes its traced gamma)."""
        return params.replace(gamma=jnp.asarray(gamma, jnp.float32))

    def with_spec(self, params: CodeRewardParams, spec: jax.Array) -> CodeRewardParams:
        """`params` with the paying spec's index replaced."""
        return params.replace(spec=jnp.asarray(spec, jnp.int32))

    def success(self, state: CodeRewardState) -> jax.Array:
        """The wrapped task's ground-truth success."""
        return self.task.success(state.env_state)

    def reset(self, key: jax.Array, params: CodeRewardParams) -> tuple[jax.Array, CodeRewardState]:
        """Reset the env; the sub-task index starts at 0 (the same for every spec)."""
        obs, env_state = self.task.reset(key, params.env)
        idx = jnp.zeros((), jnp.int32)
        return self._observation(obs, idx, env_state), CodeRewardState(env_state, idx)

    def completion(self, env_state: Any) -> jax.Array:
        """bool[S, K]: every spec's sub-task completion in one env state (padding False)."""
        # NOTE: programs compiled with the task's sprite sheets read cell ids, not drawn frames;
        # under jit an observation no spec reads is compiled away.
        observed: dict[bool, Any] = {}
        rows = []
        for spec, cells in zip(self.specs, self._reads_cells):
            if cells not in observed:
                observed[cells] = (
                    observe_cells(self.task, env_state, self.mode)
                    if cells
                    else self.task.observe(env_state, self.mode)
                )
            done = spec.completion(observed[cells])
            rows.append(jnp.pad(done, (0, self.num_subtasks - done.shape[0])))
        return jnp.stack(rows)

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
        # NOTE: every program of every spec runs on every step and the paying spec's row is
        # gathered: K is small, and under vmap over units the spec index is batched, so a
        # lax.switch would run every branch anyway. Measured: 8 DoorKey specs cost the same as
        # one (benchmarks/search_throughput.py, its control program).
        done_now = self._of_spec(self.completion(env_state), params.spec)
        new_idx = self.advance(idx, done_now)
        potential = self._of_spec(self.potential, params.spec)
        if self.shaping == "bonus":
            code = potential[new_idx] - potential[idx]  # every sub-task passed, once
        else:
            phi_next = jnp.where(terminated, 0.0, potential[new_idx])
            code = params.gamma * phi_next - potential[idx]
        code = self._of_spec(self.code_weights, params.spec) * code.astype(jnp.float32)
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
        shown = jnp.where(self._of_spec(self.code_weights, params.spec) != 0, new_idx, 0)
        obs = self._observation(obs, shown, env_state)
        return obs, new_state, reward, terminated, truncated, info

    def _of_spec(self, table: jax.Array, spec: jax.Array) -> jax.Array:
        """Row `spec` of a per-spec table ([S, ...]); static with one spec (no gather)."""
        return table[0] if self.num_specs == 1 else table[spec]

    def _observation(self, obs: jax.Array, idx: jax.Array, env_state: Any) -> jax.Array:
        """The policy observation: the carried object drawn in when `carried_obs`, the sub-task
        progress added when `progress_obs`."""
        if self.carried_obs:
            obs = self.task.show_carried(obs, env_state)
        if not self.progress_obs:
            return obs
        return add_progress(obs, idx, self.num_subtasks)

    def observation_meta(self) -> dict[str, bool]:
        """What the policy observation adds to the task's own (recorded in run.json)."""
        return {"progress": self.progress_obs, "carried": self.carried_obs}


def check_carried(task, option: str) -> None:
    """Refuse `option` (the carried-object view) for a task without `show_carried`."""
    if getattr(task, "show_carried", None) is None:
        raise UserError(
            f"{option}: task {task.id!r} ({getattr(task, 'family', '') or 'no family'}) has no "
            "carried object to show in its observation; only tasks with `show_carried` "
            "(MiniGrid) take it"
        )


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
