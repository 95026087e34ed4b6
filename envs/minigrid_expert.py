"""Scripted MiniGrid expert: shortest paths by BFS over the grid (in jnp) with sub-goal sequencing.

Every sub-goal is "stand next to a cell of this mask, face it, do this action": pick up the key,
toggle the door, step onto the goal (forward), put down what is carried. The expert is stateless:
each step it reads the sub-goal off the state, so it is jittable, vmappable and restartable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from xminigrid.core.constants import DIRECTIONS, Tiles

# xminigrid action ids
FORWARD, TURN_RIGHT, TURN_LEFT, PICK_UP, PUT_DOWN, TOGGLE = 0, 1, 2, 3, 4, 5

_PICKABLE = (Tiles.BALL, Tiles.SQUARE, Tiles.PYRAMID, Tiles.KEY, Tiles.HEX, Tiles.STAR)
_WALKABLE = (Tiles.FLOOR, Tiles.GOAL, Tiles.DOOR_OPEN)
_DOORS = (Tiles.DOOR_LOCKED, Tiles.DOOR_CLOSED, Tiles.DOOR_OPEN)


def _isin(tiles: jax.Array, ids: tuple[int, ...]) -> jax.Array:
    out = jnp.zeros(tiles.shape, bool)
    for i in ids:
        out = out | (tiles == i)
    return out


def _neighbour_min(d: jax.Array, inf: int) -> jax.Array:
    """Minimum over the four 4-neighbours of each cell (outside the grid counts as `inf`)."""
    p = jnp.pad(d, 1, constant_values=inf)
    return jnp.minimum(
        jnp.minimum(p[:-2, 1:-1], p[2:, 1:-1]), jnp.minimum(p[1:-1, :-2], p[1:-1, 2:])
    )


def distance_map(seeds: jax.Array, walkable: jax.Array) -> jax.Array:
    """Steps from each walkable cell to the nearest cell next to a seed (0 on seeds), BFS by relaxation."""
    h, w = seeds.shape
    inf = h * w + 1
    d0 = jnp.where(seeds, 0, inf).astype(jnp.int32)

    def sweep(carry):
        d, _ = carry
        new = jnp.where(
            seeds, 0, jnp.where(walkable, jnp.minimum(d, _neighbour_min(d, inf) + 1), inf)
        )
        return new, jnp.any(new != d)

    # NOTE: while_loop under vmap runs until every env has converged (at most h*w sweeps).
    d, _ = jax.lax.while_loop(lambda c: c[1], sweep, (d0, jnp.asarray(True)))
    return d


def _turn_towards(direction: jax.Array, want: jax.Array) -> jax.Array:
    """TURN_LEFT when `want` is one quarter counter-clockwise of `direction`, else TURN_RIGHT."""
    return jnp.where((want - direction) % 4 == 3, TURN_LEFT, TURN_RIGHT)


def act_towards(
    d: jax.Array, walkable: jax.Array, pos: jax.Array, direction: jax.Array, action: int
) -> tuple[jax.Array, jax.Array]:
    """Next action to reach a seed's side (distance map `d`), face it and do `action`; and whether reachable."""
    inf = d.shape[0] * d.shape[1] + 1
    nbr = pos[None, :] + DIRECTIONS  # [4, 2] up, right, down, left
    nbr = jnp.clip(nbr, 0, jnp.array(d.shape) - 1)
    nd = d[nbr[:, 0], nbr[:, 1]]
    here = d[pos[0], pos[1]]
    # next to a seed: face one and act; otherwise step to a neighbour one closer.
    goal_dir = jnp.where(here == 1, nd == 0, (nd == here - 1) & walkable[nbr[:, 0], nbr[:, 1]])
    # prefer the current heading, then the others in a fixed order
    order = (direction + jnp.arange(4)) % 4
    first = order[jnp.argmax(goal_dir[order])]
    facing = first == direction
    final = jnp.where(here == 1, action, FORWARD)
    out = jnp.where(facing, final, _turn_towards(direction, first))
    return out, (here < inf) & jnp.any(goal_dir)


def minigrid_expert(key: jax.Array, state, kind: str) -> jax.Array:
    """The expert action for one state of a MiniGrid task of `kind` (see envs/minigrid.py)."""
    grid = state.grid
    tiles, colors = grid[..., 0], grid[..., 1]
    pos, direction = state.agent.position, state.agent.direction
    pocket = state.agent.pocket
    holding = pocket[0] != Tiles.EMPTY
    target_tile = state.goal_encoding[1:3]  # held object (pickup tasks) or goal tile

    door = _isin(tiles, _DOORS)
    door_locked = jnp.any(tiles == Tiles.DOOR_LOCKED)
    door_closed = jnp.any(tiles == Tiles.DOOR_CLOSED)
    door_color = jnp.max(jnp.where(door, colors, 0))
    holding_key = (pocket[0] == Tiles.KEY) & (pocket[1] == door_color)
    keys = (tiles == Tiles.KEY) & (colors == door_color)
    pickable = _isin(tiles, _PICKABLE)
    # cells where dropping something keeps every door free: floor, not next to a door, not under the agent
    door_side = _neighbour_min(jnp.where(door, 0, 1), 1) == 0
    drop_cells = (tiles == Tiles.FLOOR) & ~door_side
    drop_cells = drop_cells.at[pos[0], pos[1]].set(False)

    target = (tiles == target_tile[0]) & (colors == target_tile[1])
    # a pickable object right beside the door: moved away when it blocks the door. (When it is the
    # same kind and colour as the target, picking it up already solves the task, as in xminigrid.)
    blockers = pickable & door_side
    walkable = _isin(tiles, _WALKABLE)
    # NOTE: the five BFS run as one batched while_loop.
    dist = jax.vmap(distance_map, in_axes=(0, None))(
        jnp.stack([door, keys, drop_cells, blockers, target]), walkable
    )
    go_door = act_towards(dist[0], walkable, pos, direction, TOGGLE)
    go_key = act_towards(dist[1], walkable, pos, direction, PICK_UP)
    go_drop = act_towards(dist[2], walkable, pos, direction, PUT_DOWN)
    go_blocker = act_towards(dist[3], walkable, pos, direction, PICK_UP)

    if kind == "goal":  # step onto the goal tile; holding the key does not matter
        final = act_towards(dist[4], walkable, pos, direction, FORWARD)[0]
        carry_ok = jnp.asarray(True)
    elif kind == "unlock":  # the task ends when the door opens
        final = go_door[0]
        carry_ok = jnp.asarray(True)
    elif kind == "pickup":  # hold the target object, so hands must be free
        final = act_towards(dist[4], walkable, pos, direction, PICK_UP)[0]
        carry_ok = ~holding
    else:
        raise ValueError(f"unknown MiniGrid expert kind {kind!r}")

    door_reachable = go_door[1]
    locked_action = jnp.where(
        holding_key,
        jnp.where(door_reachable, go_door[0], go_drop[0]),
        jnp.where(
            holding,
            go_drop[0],
            jnp.where(door_reachable | ~go_blocker[1], go_key[0], go_blocker[0]),
        ),
    )
    open_action = jnp.where(carry_ok, final, go_drop[0])
    action = jnp.where(door_locked, locked_action, jnp.where(door_closed, go_door[0], open_action))
    return action.astype(jnp.int32)
