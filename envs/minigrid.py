"""MiniGrid tasks on xminigrid: DoorKey, Unlock, UnlockPickUp, BlockedUnlockPickUp, Empty.

Program inputs come in two modes. `state`: the agent's position and direction, the tile kind and
colour of every cell of the full grid, and what the agent carries. `pixels`: one RGB frame of the
full grid (plus an inventory row showing what is carried), drawn in jit by gathering pre-drawn tile
sprites; `render` draws the same design at a readable size for the VLM.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xminigrid
from xminigrid.core.constants import NUM_COLORS, NUM_TILES, Colors, Tiles
from xminigrid.types import StepType, TimeStep

from envs._draw import SpriteFrame
from envs.base import ActionSpace, InputField, Task
from envs.minigrid_expert import minigrid_expert
from envs.minigrid_sprites import (
    AGENT_RGB,
    BIG_PX,
    GRID_LINE_RGB,
    PALETTE,
    SMALL_PX,
    compose_numpy,
    sprite_tables,
)
from envs.registry import register

ACTION_NAMES = ("forward", "turn_right", "turn_left", "pick_up", "put_down", "toggle")
TILE_NAMES = (
    "EMPTY",
    "FLOOR",
    "WALL",
    "BALL",
    "SQUARE",
    "PYRAMID",
    "GOAL",
    "KEY",
    "DOOR_LOCKED",
    "DOOR_CLOSED",
    "DOOR_OPEN",
    "HEX",
    "STAR",
)
COLOR_NAMES = (
    "NO_COLOR",
    "RED",
    "GREEN",
    "BLUE",
    "PURPLE",
    "YELLOW",
    "GREY",
    "BLACK",
    "ORANGE",
    "WHITE",
    "BROWN",
    "PINK",
)
DIRECTION_NAMES = ("DIR_UP", "DIR_RIGHT", "DIR_DOWN", "DIR_LEFT")
assert len(TILE_NAMES) == NUM_TILES and getattr(Tiles, TILE_NAMES[8]) == 8
assert len(COLOR_NAMES) == NUM_COLORS and COLOR_NAMES.index("YELLOW") == Colors.YELLOW

_VIEW = 7  # xminigrid's egocentric view size (the policy observation)


class MiniGridTask(Task):
    """One xminigrid environment behind the Task contract (no auto-reset)."""

    family = "minigrid"
    modes = ("state", "pixels")
    action = ActionSpace("discrete", n=len(ACTION_NAMES), names=ACTION_NAMES)
    obs_shape = (_VIEW, _VIEW, 2)
    obs_dtype = "uint8"

    def __init__(self, task_id: str, kind: str, mission: str, *, repair_missing_key: bool = False):
        self.id = task_id
        self.kind = kind  # "goal" (reach the goal tile) | "unlock" (open the door) | "pickup" (hold an object)
        self.mission = mission  # the whole task in one sentence (for docs and reference specs)
        self.env, self.params = xminigrid.make(task_id, view_size=_VIEW)
        self.height, self.width = int(self.params.height), int(self.params.width)
        self.max_steps = int(self.params.max_steps)
        self._repair = repair_missing_key
        self._sprite_frame: SpriteFrame | None = None
        self.expert = lambda key, state, params: minigrid_expert(key, state, kind)

    # --- functional env -------------------------------------------------------------------
    def reset(self, key: jax.Array, params: Any) -> tuple[jax.Array, Any]:
        """Start an episode: (egocentric view uint8 [7, 7, 2], xminigrid State)."""
        ts = self.env.reset(params, key)
        if self._repair:
            # NOTE: xminigrid's BlockedUnlockPickUp places the blocking ball after the key and
            # overwrites it in about 7% of layouts (no key: unsolvable), and the blocker may be the
            # same kind and colour as the target (picking it up wins at once). Redraw those
            # layouts: Farama MiniGrid never stacks two objects and its blocker (a ball) and target
            # (a box) always differ.
            # NOTE: under vmap this while_loop runs until every env's layout is accepted. PPO's
            # reset pool (car_jax.rl.resets) pays that once per rollout, not on every step.
            def missing(carry):
                state = carry[1].state
                target = state.goal_encoding[1:3]
                copies = jnp.sum(
                    (state.grid[..., 0] == target[0]) & (state.grid[..., 1] == target[1])
                )
                return ~jnp.any(state.grid[..., 0] == Tiles.KEY) | (copies != 1)

            def redraw(carry):
                k, _ = carry
                k, sub = jax.random.split(k)
                return k, self.env.reset(params, sub)

            _, ts = jax.lax.while_loop(missing, redraw, (key, ts))
        return ts.observation, ts.state

    def step(
        self, key: jax.Array, state: Any, action: jax.Array, params: Any
    ) -> tuple[jax.Array, Any, jax.Array, jax.Array, jax.Array, dict]:
        """One transition: (obs, state, reward, terminated, truncated, {}); `key` is unused (deterministic)."""
        ts = TimeStep(
            state=state,
            step_type=StepType.MID,
            reward=jnp.asarray(0.0),
            discount=jnp.asarray(1.0),
            observation=jnp.zeros(self.obs_shape, jnp.uint8),  # not read by xminigrid's step
        )
        nxt = self.env.step(params, ts, action)
        terminated = nxt.discount == 0.0
        # truncated only when the step limit ends an unfinished episode
        truncated = (nxt.state.step_num >= self.max_steps) & ~terminated
        reward = nxt.reward.astype(jnp.float32)  # 1 - 0.9 * steps / max_steps on success, else 0
        return nxt.observation, nxt.state, reward, terminated, truncated, {}

    def show_carried(self, obs: jax.Array, state: Any) -> jax.Array:
        """The view with the carried object (tile, colour) in the agent's cell, when it carries one.

        Farama MiniGrid's observation does this; xminigrid's does not, so without it the policy
        cannot tell whether it still holds the key once the door is open (UnlockPickUp must drop
        it before picking up the box) and a greedy policy can loop.
        """
        pocket = state.agent.pocket.astype(obs.dtype)
        here = obs[_VIEW - 1, _VIEW // 2]  # the agent's cell in the view (aligned facing up)
        shown = jnp.where(pocket[0] != Tiles.EMPTY, pocket, here)
        return obs.at[_VIEW - 1, _VIEW // 2].set(shown)

    # --- program inputs ----------------------------------------------------------------------
    def inputs(self, mode: str) -> dict[str, InputField]:
        """Program inputs of `mode` ("state" or "pixels")."""
        h, w = self.height, self.width
        if self.check_mode(mode) == "state":
            return {
                "agent_pos": InputField(
                    (2,),
                    "int32",
                    "agent cell as (row, col); row 0 is the top, col 0 the left",
                    0,
                    max(h, w) - 1,
                ),
                "agent_dir": InputField(
                    (), "int32", "agent heading: DIR_UP, DIR_RIGHT, DIR_DOWN or DIR_LEFT", 0, 3
                ),
                "tiles": InputField(
                    (h, w), "uint8", "tile kind of every cell [row, col] (EMPTY ... STAR)", 0, 12
                ),
                "colors": InputField(
                    (h, w), "uint8", "colour id of every cell [row, col] (RED ... PINK)", 0, 11
                ),
                "carried_tile": InputField(
                    (), "int32", "tile kind the agent carries, EMPTY when nothing", 0, 12
                ),
                "carried_color": InputField(
                    (), "int32", "colour id of what the agent carries, NO_COLOR if none", 0, 11
                ),
            }
        return {
            "frame": InputField(
                ((h + 1) * SMALL_PX, w * SMALL_PX, 3),
                "uint8",
                f"RGB image, {SMALL_PX} px per cell: the {h}x{w} grid, then one inventory row whose "
                "first cell shows what the agent carries",
                0,
                255,
            )
        }

    def observe(self, state: Any, mode: str) -> dict[str, jax.Array]:
        """Program inputs of `mode` for one state; jittable."""
        if self.check_mode(mode) == "state":
            return {
                "agent_pos": state.agent.position.astype(jnp.int32),
                "agent_dir": state.agent.direction.astype(jnp.int32),
                "tiles": state.grid[..., 0],
                "colors": state.grid[..., 1],
                "carried_tile": state.agent.pocket[0].astype(jnp.int32),
                "carried_color": state.agent.pocket[1].astype(jnp.int32),
            }
        return {"frame": self.frame(state)}

    def frame(self, state: Any) -> jax.Array:
        """The small RGB frame uint8 [(H+1)*8, W*8, 3], gathered from the sprite table in jit."""
        sheet = self.sprite_frames("pixels")["frame"]
        return sheet.draw(sheet.cell_ids(state))

    def sprite_frames(self, mode: str) -> dict[str, SpriteFrame]:
        """The sprite-table inputs of `mode` (`frame` in pixels mode): programs may read them lazily."""
        if self.check_mode(mode) == "state":
            return {}
        if self._sprite_frame is None:
            sprites = sprite_tables()[1]  # [5, 156, px, px, 3]
            self._sprite_frame = SpriteFrame(
                sprites.reshape(-1, *sprites.shape[2:]),
                (self.height + 1, self.width),
                self.cell_ids,
            )
        return {"frame": self._sprite_frame}

    def cell_ids(self, state: Any) -> jax.Array:
        """int32 [H+1, W]: sprite index (layer * 156 + tile * 12 + colour) of every frame cell."""
        h, w = self.height, self.width
        grid = state.grid.astype(jnp.int32)
        pos = state.agent.position
        layer = (
            jnp.zeros((h, w), jnp.int32)
            .at[pos[0], pos[1]]
            .set(1 + state.agent.direction.astype(jnp.int32))
        )
        cells = layer * (NUM_TILES * NUM_COLORS) + grid[..., 0] * NUM_COLORS + grid[..., 1]
        pocket = state.agent.pocket.astype(jnp.int32)
        # The inventory row: the carried object (no agent layer) in its first cell, sprite 0
        # (empty, all black) elsewhere.
        inventory = jnp.zeros((1, w), jnp.int32).at[0, 0].set(pocket[0] * NUM_COLORS + pocket[1])
        return jnp.concatenate([cells, inventory], axis=0)

    def constants(self, mode: str) -> dict[str, int | float | tuple]:
        """Named constants: tile kinds, colour ids and directions (state); palette RGB (pixels)."""
        out: dict[str, int | float | tuple] = {"GRID_HEIGHT": self.height, "GRID_WIDTH": self.width}
        if self.check_mode(mode) == "state":
            out.update({name: i for i, name in enumerate(TILE_NAMES)})
            out.update({name: i for i, name in enumerate(COLOR_NAMES)})
            out.update({name: i for i, name in enumerate(DIRECTION_NAMES)})
            return out
        out["TILE_PX"] = SMALL_PX
        out["INVENTORY_ROW"] = self.height
        for i, name in enumerate(COLOR_NAMES[1:], start=1):
            out[f"{name}_RGB"] = tuple(PALETTE[i])
        out["AGENT_RGB"] = AGENT_RGB
        out["GRID_LINE_RGB"] = GRID_LINE_RGB
        return out

    # --- for the VLM and evaluation ----------------------------------------------------------
    def render(self, state: Any) -> np.ndarray:
        """The VLM image uint8 [(H+1)*32, W*32, 3]: the same design as `frame`, 4x larger."""
        big = sprite_tables()[0]
        return compose_numpy(
            big,
            np.asarray(state.grid),
            np.asarray(state.agent.position),
            int(state.agent.direction),
            np.asarray(state.agent.pocket),
        )

    def success(self, state: Any) -> jax.Array:
        """Goal tile reached (DoorKey, Empty), door opened (Unlock) or target object held (pickups)."""
        target = state.goal_encoding[1:3]
        if self.kind == "goal":
            here = state.grid[state.agent.position[0], state.agent.position[1]]
            return jnp.all(here == target)
        if self.kind == "unlock":
            where = state.goal_encoding[3:5]
            return jnp.all(state.grid[where[0], where[1]] == target)
        return jnp.all(state.agent.pocket == target)

    def describe(self) -> str:
        """The setting, the actions and the inputs, for prompts."""
        h, w = self.height, self.width
        return (
            f"A {h}x{w} MiniGrid world seen from above (row 0 at the top), surrounded by grey walls. "
            "The red triangle is the agent; it points where it faces. Objects: keys, doors "
            "(locked, closed or open; a locked door opens with a key of its colour), balls, boxes "
            "(squares, pyramids, hexagons, stars) and a green goal square. Actions: 0 forward (one cell, "
            "if the cell ahead is floor, an open door or the goal), 1 turn right, 2 turn left, "
            "3 pick up the object ahead (hands must be empty), 4 put down the carried object on the "
            "free floor cell ahead, 5 toggle the door ahead (unlock it when carrying its key, "
            "open or close it). Only one object can be carried at a time. "
            "In `state` mode a program sees agent_pos (row, col), agent_dir, tiles and colors of "
            "every cell, and carried_tile/carried_color. In `pixels` mode it sees one RGB frame with "
            f"{SMALL_PX} px per cell: the grid, then below it an inventory row (row INVENTORY_ROW) whose "
            "first cell shows the carried object."
        )


_TASKS = (
    (
        "MiniGrid-DoorKey-5x5",
        "goal",
        "Pick up the key, unlock the door and reach the green goal square.",
    ),
    (
        "MiniGrid-DoorKey-6x6",
        "goal",
        "Pick up the key, unlock the door and reach the green goal square.",
    ),
    (
        "MiniGrid-DoorKey-8x8",
        "goal",
        "Pick up the key, unlock the door and reach the green goal square.",
    ),
    (
        "MiniGrid-DoorKey-16x16",
        "goal",
        "Pick up the key, unlock the door and reach the green goal square.",
    ),
    ("MiniGrid-Unlock", "unlock", "Pick up the key and open the locked door."),
    (
        "MiniGrid-UnlockPickUp",
        "pickup",
        "Unlock the door with the key, then pick up the object in the other room.",
    ),
    (
        "MiniGrid-BlockedUnlockPickUp",
        "pickup",
        "Move the ball blocking the door, unlock the door with the key, then pick up the object in the other room.",
    ),
    ("MiniGrid-Empty-8x8", "goal", "Reach the green goal square."),
)


def _factory(task_id: str, kind: str, mission: str):
    def make() -> MiniGridTask:
        return MiniGridTask(
            task_id, kind, mission, repair_missing_key=task_id == "MiniGrid-BlockedUnlockPickUp"
        )

    return make


for _id, _kind, _mission in _TASKS:
    register(_id, _factory(_id, _kind, _mission))


__all__ = ["MiniGridTask", "ACTION_NAMES", "TILE_NAMES", "COLOR_NAMES", "DIRECTION_NAMES", "BIG_PX"]
