"""The Task contract: what a reward program, an expert and the trainer need from one environment.

`envs/` knows nothing of rewards or programs. A Task exposes a gymnax-style functional env
(`reset`, `step` without auto-reset, terminated and truncated kept apart), the program inputs
(`inputs(mode)`, `observe(state, mode)`), named constants, a renderer for the VLM, the
ground-truth `success`, and a scripted expert where one exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class TaskError(ValueError):
    """Bad input to `envs` (unknown id, unknown mode, duplicate registration)."""


class InputField(NamedTuple):
    """One program input: its shape, dtype name, meaning and (where known) value range."""

    shape: tuple[int, ...]
    dtype: str
    doc: str
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class ActionSpace:
    """Discrete (`n` actions) or continuous (`dim` values in [low, high])."""

    kind: str  # "discrete" | "continuous"
    n: int = 0
    dim: int = 0
    low: float = -1.0
    high: float = 1.0
    names: tuple[str, ...] = ()

    def sample(self, key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
        """A uniformly random action (batched by `shape`)."""
        if self.kind == "discrete":
            return jax.random.randint(key, shape, 0, self.n)
        return jax.random.uniform(key, (*shape, self.dim), minval=self.low, maxval=self.high)


class Task:
    """Base class of every registered task; subclasses fill in the environment-specific parts."""

    id: str = ""
    family: str = ""
    params: Any = None
    max_steps: int = 0
    modes: tuple[str, ...] = ("state",)
    action: ActionSpace = ActionSpace("discrete", n=1)
    obs_shape: tuple[int, ...] = ()
    obs_dtype: str = "float32"
    expert: Callable[[jax.Array, Any, Any], jax.Array] | None = None

    # --- functional env -------------------------------------------------------------------
    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        """Start an episode: (policy observation, state)."""
        raise NotImplementedError

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict]:
        """One transition, no auto-reset: (obs, state, reward, terminated, truncated, info)."""
        raise NotImplementedError

    # --- program inputs ----------------------------------------------------------------------
    def inputs(self, mode: str) -> dict[str, InputField]:
        """The program input spec of `mode`: name -> InputField."""
        raise NotImplementedError

    def observe(self, state: Any, mode: str) -> dict[str, jax.Array]:
        """The program inputs of `mode` for one state; jittable; matches `inputs(mode)` exactly."""
        raise NotImplementedError

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Named constants programs may use as bare UPPER_CASE names."""
        return {}

    # --- for the VLM and evaluation ----------------------------------------------------------
    def render(self, state: Any) -> np.ndarray:
        """A uint8 H x W x 3 image of one (unbatched) state, for the VLM."""
        raise NotImplementedError

    def success(self, state: Any) -> jax.Array:
        """Ground truth: the task is solved in `state` (bool scalar). Evaluation only."""
        raise NotImplementedError

    def describe(self) -> str:
        """A paragraph for prompts: the setting, the actions, what the inputs mean."""
        return ""

    # Optional, for tasks whose policy observation hides what the agent carries (MiniGrid):
    # `show_carried(obs, state) -> obs` draws the carried object into the observation (same shape
    # and dtype). None: the task has nothing of the kind to show.
    show_carried: Callable[[jax.Array, Any], jax.Array] | None = None

    # --- derived helpers ---------------------------------------------------------------------
    def check_mode(self, mode: str) -> str:
        """Return `mode` if this task offers it, else raise TaskError naming the choices."""
        if mode not in self.modes:
            raise TaskError(
                f"task {self.id!r} has no input mode {mode!r}; its modes are {', '.join(self.modes)}"
            )
        return mode

    def initial_state(self, key: jax.Array) -> Any:
        """The state right after reset."""
        return self.reset(key, self.params)[1]

    def goal_state(self, key: jax.Array) -> Any:
        """The state in which the expert, run from `initial_state(key)`, first succeeds."""
        if self.expert is None:
            raise TaskError(f"task {self.id!r} has no scripted expert, so no goal state")
        return _goal_state(self, key)


def _goal_state(task: Task, key: jax.Array) -> Any:
    # NOTE: jitted per task instance (task is closed over, not traced).
    @jax.jit
    def run(key):
        # NOTE: the same reset as `initial_state(key)`, so the goal shows that very layout; the
        # expert's own randomness comes from a key folded off it.
        _, state = task.reset(key, task.params)
        key = jax.random.fold_in(key, 1)

        def cond(carry):
            _, state, done, t = carry
            return jnp.logical_and(~done, t < task.max_steps)

        def body(carry):
            key, state, _, t = carry
            key, k_act, k_step = jax.random.split(key, 3)
            action = task.expert(k_act, state, task.params)
            _, new_state, _, term, trunc, _ = task.step(k_step, state, action, task.params)
            done = task.success(new_state) | term | trunc
            return key, new_state, done, t + 1

        _, state, _, _ = jax.lax.while_loop(cond, body, (key, state, task.success(state), 0))
        return state

    return run(key)
