"""SwitchRoom-7x7: a hand-written jittable gridworld, registered with car-jax as a plugin task.

The agent (blue) walks on an open 7 x 7 floor. Stepping on the switch turns it from red to green;
the episode is solved when the agent then stands on the goal (a white ring). Two input modes:
`state` (positions and the switch flag) and `pixels` (a 28 x 28 RGB frame, 4 pixels per cell).
The scripted expert walks to the switch, then to the goal.

Importing this module registers the task (`envs.register`) and, because the reference specs in
`reference/` call it, the plugin's primitive (`switchroom.primitives`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

import switchroom.primitives  # noqa: F401  (the reference specs call colours_touch)
from envs import ActionSpace, InputField, Task, register

TASK_ID = "SwitchRoom-7x7"
# Reference specs (`<TaskId>.<mode>.py`): the replay backend answers from here, so
# `car-jax run SwitchRoom-7x7` works offline like the built-in tasks.
REFERENCE_DIR = Path(__file__).parent / "reference"

SIZE = 7  # cells per side
CELL_PX = 4  # pixels per cell in the `pixels` frame
RENDER_SCALE = 8  # the VLM image is the frame scaled up 8x (224 x 224)
# Moves of actions 0..3: up, right, down, left, as (d_row, d_col).
MOVES = np.array([[-1, 0], [0, 1], [1, 0], [0, -1]], np.int32)

FLOOR_RGB = (40, 40, 40)
AGENT_RGB = (40, 90, 255)
GOAL_RGB = (255, 255, 255)
SWITCH_OFF_RGB = (220, 30, 30)
SWITCH_ON_RGB = (30, 200, 60)


@struct.dataclass
class SwitchRoomParams:
    """Episode settings (vmappable)."""

    max_steps: int = 50


@struct.dataclass
class SwitchRoomState:
    """Agent, switch and goal cells as (row, col); whether the switch is on; the step count."""

    agent: jax.Array
    switch: jax.Array
    goal: jax.Array
    switch_on: jax.Array
    time: jax.Array


def _cell_pixels() -> tuple[np.ndarray, np.ndarray]:
    """Masks of one cell: the goal's ring (border pixels) and the agent's block (centre)."""
    ring = np.ones((CELL_PX, CELL_PX), bool)
    ring[1:-1, 1:-1] = False
    return ring, ~ring


_RING, _BLOCK = _cell_pixels()


def draw_frame(state: SwitchRoomState) -> jax.Array:
    """The `pixels` input: uint8 [28, 28, 3], jittable. The agent's block sits inside the goal's
    ring when it stands on the goal, so the two colours touch only then."""
    rows = jnp.arange(SIZE * CELL_PX) // CELL_PX
    inner = jnp.arange(SIZE * CELL_PX) % CELL_PX
    cell_r, cell_c = rows[:, None], rows[None, :]
    ring = jnp.asarray(_RING)[inner[:, None], inner[None, :]]
    block = jnp.asarray(_BLOCK)[inner[:, None], inner[None, :]]

    def at(pos):
        return (cell_r == pos[0]) & (cell_c == pos[1])

    frame = jnp.broadcast_to(jnp.asarray(FLOOR_RGB, jnp.uint8), (SIZE * CELL_PX, SIZE * CELL_PX, 3))
    switch_rgb = jnp.where(
        state.switch_on,
        jnp.asarray(SWITCH_ON_RGB, jnp.uint8),
        jnp.asarray(SWITCH_OFF_RGB, jnp.uint8),
    )
    frame = jnp.where(at(state.switch)[..., None], switch_rgb, frame)
    frame = jnp.where((at(state.goal) & ring)[..., None], jnp.asarray(GOAL_RGB, jnp.uint8), frame)
    frame = jnp.where(
        (at(state.agent) & block)[..., None], jnp.asarray(AGENT_RGB, jnp.uint8), frame
    )
    return frame


def _toward(pos: jax.Array, target: jax.Array) -> jax.Array:
    """The action that moves `pos` one cell toward `target`: rows first, then columns."""
    d = target - pos
    return jnp.where(
        d[0] < 0, 0, jnp.where(d[0] > 0, 2, jnp.where(d[1] > 0, 1, jnp.where(d[1] < 0, 3, 0)))
    ).astype(jnp.int32)


def expert(key: jax.Array, state: SwitchRoomState, params: SwitchRoomParams) -> jax.Array:
    """Walk to the switch while it is off, then to the goal (jittable, vmappable)."""
    del key, params
    target = jnp.where(state.switch_on, state.goal, state.switch)
    return _toward(state.agent, target)


class SwitchRoomTask(Task):
    """Turn the switch on, then stand on the goal."""

    id = TASK_ID
    # NOTE: `family` picks car-jax's PPO defaults; "classic" = an MLP over a small float vector.
    family = "classic"
    modes = ("state", "pixels")
    action = ActionSpace("discrete", n=4, names=("up", "right", "down", "left"))
    obs_shape = (7,)
    obs_dtype = "float32"

    def __init__(self, max_steps: int = 50):
        self.params = SwitchRoomParams(max_steps=max_steps)
        self.max_steps = max_steps
        self.expert = expert

    # --- functional env ------------------------------------------------------------------------
    def _policy_obs(self, state: SwitchRoomState) -> jax.Array:
        scale = 1.0 / (SIZE - 1)
        return jnp.concatenate(
            [state.agent * scale, state.switch * scale, state.goal * scale, state.switch_on[None]]
        ).astype(jnp.float32)

    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, SwitchRoomState]:
        """Agent, switch and goal on three distinct random cells; the switch is off."""
        cells = jax.random.permutation(key, SIZE * SIZE)[:3]
        pos = jnp.stack([cells // SIZE, cells % SIZE], axis=-1).astype(jnp.int32)
        state = SwitchRoomState(
            agent=pos[0], switch=pos[1], goal=pos[2], switch_on=jnp.bool_(False), time=jnp.int32(0)
        )
        return self._policy_obs(state), state

    def step(self, key: jax.Array, state: SwitchRoomState, action: jax.Array, params: Any):
        """Move one cell (walls stop the agent); the switch turns on when stepped on."""
        del key
        agent = jnp.clip(state.agent + jnp.asarray(MOVES)[action], 0, SIZE - 1)
        switch_on = state.switch_on | jnp.all(agent == state.switch)
        time = state.time + 1
        nxt = SwitchRoomState(agent, state.switch, state.goal, switch_on, time)
        solved = self.success(nxt)
        reward = jnp.where(solved, 1.0 - 0.9 * time / params.max_steps, 0.0).astype(jnp.float32)
        truncated = (time >= params.max_steps) & ~solved
        return self._policy_obs(nxt), nxt, reward, solved, truncated, {}

    # --- program inputs ------------------------------------------------------------------------
    def inputs(self, mode: str) -> dict[str, InputField]:
        """`state`: cells and the switch flag; `pixels`: the RGB frame."""
        self.check_mode(mode)
        if mode == "pixels":
            px = SIZE * CELL_PX
            return {
                "frame": InputField((px, px, 3), "uint8", "the room, 4 pixels per cell", 0, 255)
            }
        cell = "(row, col) of the {}, 0..6"
        return {
            "agent": InputField((2,), "int32", cell.format("agent"), 0, SIZE - 1),
            "switch": InputField((2,), "int32", cell.format("switch"), 0, SIZE - 1),
            "goal": InputField((2,), "int32", cell.format("goal"), 0, SIZE - 1),
            "switch_on": InputField((), "bool", "the switch has been turned on"),
        }

    def observe(self, state: SwitchRoomState, mode: str) -> dict[str, jax.Array]:
        """The inputs of `mode` for one state (jittable)."""
        self.check_mode(mode)
        if mode == "pixels":
            return {"frame": draw_frame(state)}
        return {
            "agent": state.agent,
            "switch": state.switch,
            "goal": state.goal,
            "switch_on": state.switch_on,
        }

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Colours (pixels mode) and the room size."""
        self.check_mode(mode)
        consts: dict[str, int | float | tuple] = {"SIZE": SIZE}
        if mode == "pixels":
            consts.update(
                CELL_PX=CELL_PX,
                FLOOR_RGB=FLOOR_RGB,
                AGENT_RGB=AGENT_RGB,
                GOAL_RGB=GOAL_RGB,
                SWITCH_OFF_RGB=SWITCH_OFF_RGB,
                SWITCH_ON_RGB=SWITCH_ON_RGB,
            )
        return consts

    # --- for the VLM and evaluation ------------------------------------------------------------
    def render(self, state: SwitchRoomState) -> np.ndarray:
        """The pixels frame scaled up 8x for the VLM (224 x 224)."""
        frame = np.asarray(draw_frame(state))
        return np.repeat(np.repeat(frame, RENDER_SCALE, axis=0), RENDER_SCALE, axis=1)

    def success(self, state: SwitchRoomState) -> jax.Array:
        """The switch is on and the agent stands on the goal."""
        return state.switch_on & jnp.all(state.agent == state.goal)

    def describe(self) -> str:
        """The setting, the actions and the inputs, for prompts."""
        return (
            "A 7x7 room seen from above. The agent (blue square) moves one cell per action: "
            "0 up, 1 right, 2 down, 3 left; the walls stop it. A switch cell is red while off and "
            "turns green for good once the agent steps on it. The goal is a white ring; the task "
            "is solved when the agent stands inside the ring after turning the switch on."
        )


register(TASK_ID, SwitchRoomTask)
