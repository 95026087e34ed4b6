"""MiniGrid tasks: API under jit+vmap, exact input specs, expert success, goal states, renders."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _task_checks import check_values_in_range, check_vmapped_api
from xminigrid.core.constants import Tiles

import envs
from envs import TaskError
from envs.minigrid_sprites import BIG_PX, SMALL_PX

IDS = [
    "MiniGrid-DoorKey-5x5",
    "MiniGrid-DoorKey-6x6",
    "MiniGrid-DoorKey-8x8",
    "MiniGrid-DoorKey-16x16",
    "MiniGrid-Unlock",
    "MiniGrid-UnlockPickUp",
    "MiniGrid-BlockedUnlockPickUp",
    "MiniGrid-Empty-8x8",
]
N_SEEDS = 256


@functools.cache
def expert_runs(task_id: str) -> dict:
    """The expert from N_SEEDS resets, each run until its episode ends (one jitted call)."""
    task = envs.make(task_id)

    @jax.jit
    def run(keys):
        _, state = jax.vmap(task.reset, in_axes=(0, None))(keys, task.params)
        first = jax.vmap(lambda s: task.observe(s, "state"))(state)
        solved_at_start = jax.vmap(task.success)(state)
        target = state.goal_encoding[:, 1:3]
        copies = jnp.sum(
            (state.grid[..., 0] == target[:, None, None, 0])
            & (state.grid[..., 1] == target[:, None, None, 1]),
            (1, 2),
        )
        n = keys.shape[0]
        zeros = jnp.zeros(n, bool)

        def cond(c):
            return ~jnp.all(c[1])

        def body(c):
            s, done, term, trunc, ret = c
            a = jax.vmap(task.expert, in_axes=(0, 0, None))(keys, s, task.params)
            _, s2, r, te, tr, _ = jax.vmap(task.step, in_axes=(0, 0, 0, None))(
                keys, s, a, task.params
            )
            keep = lambda old, new: jnp.where(done.reshape(-1, *[1] * (new.ndim - 1)), old, new)  # noqa: E731
            s2 = jax.tree.map(keep, s, s2)
            return (
                s2,
                done | te | tr,
                term | (~done & te),
                trunc | (~done & tr),
                ret + jnp.where(done, 0.0, r),
            )

        # NOTE: the loop stops when every episode has ended, not at max_steps (much cheaper).
        state, _, term, trunc, ret = jax.lax.while_loop(
            cond, body, (state, zeros, zeros, zeros, jnp.zeros(n))
        )
        return {
            "success": jax.vmap(task.success)(state),
            "terminated": term,
            "truncated": trunc,
            "return": ret,
            "steps": state.step_num,
            "solved_at_start": solved_at_start,
            "target_copies": copies,
            "first": first,
            "last": jax.vmap(lambda s: task.observe(s, "state"))(state),
            "final_states": jax.tree.map(lambda x: x[:2], state),
        }

    return jax.device_get(run(jax.random.split(jax.random.key(7), N_SEEDS)))


def test_all_registered():
    ids = envs.registered()
    for task_id in IDS:
        assert task_id in ids
        task = envs.make(task_id)
        assert task.family == "minigrid" and task.modes == ("state", "pixels")
        assert task.action.kind == "discrete" and task.action.n == 6 and len(task.action.names) == 6
        assert task.obs_shape == (7, 7, 2) and task.obs_dtype == "uint8"
        assert task.expert is not None and task.describe()


def test_vmapped_api():
    # (every task's reset/step/observe also run jitted under vmap in `expert_runs`)
    check_vmapped_api(envs.make("MiniGrid-DoorKey-5x5"))


@pytest.mark.parametrize("task_id", IDS)
def test_spec_matches_observe_exactly(task_id):
    task = envs.make(task_id)
    # NOTE: eval_shape traces without compiling, so this stays cheap for every task.
    state = jax.eval_shape(lambda k: task.reset(k, task.params)[1], jax.random.key(0))
    for mode in task.modes:
        spec = task.inputs(mode)
        out = jax.eval_shape(lambda s, m=mode: task.observe(s, m), state)
        assert sorted(out) == sorted(spec)  # NOTE: pytrees sort dict keys
        for name, field in spec.items():
            assert (out[name].shape, out[name].dtype) == (field.shape, jnp.dtype(field.dtype)), name
            assert field.doc and field.low is not None and field.high is not None, name
        assert all(name.isupper() for name in task.constants(mode))


# Tasks whose state-mode reference spec is verified in `make test` (tests/test_reference_specs.py)
# already have their expert and ground truth checked there on 32 seeds; the 256-seed check of
# those runs with the slow tests, to keep `make test` within its budget.
_COVERED_BY_REFERENCE_SPECS = {
    "MiniGrid-DoorKey-5x5",
    "MiniGrid-DoorKey-6x6",
    "MiniGrid-DoorKey-8x8",
    "MiniGrid-Empty-8x8",
    "MiniGrid-Unlock",
}


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param(t, marks=[pytest.mark.slow] if t in _COVERED_BY_REFERENCE_SPECS else [])
        for t in IDS
    ],
)
def test_expert_succeeds_on_256_seeds(task_id):
    task = envs.make(task_id)
    out = expert_runs(task_id)
    rate = float(out["success"].mean())
    assert rate >= 0.99, f"{task_id}: expert success {rate:.3f}"
    # ground truth agrees with the env's own termination and sparse reward
    np.testing.assert_array_equal(out["success"], out["terminated"])
    assert (out["return"][out["success"]] > 0).all() and (out["return"][~out["success"]] == 0).all()
    assert not (out["terminated"] & out["truncated"]).any()
    assert (out["steps"] <= task.max_steps).all()
    check_values_in_range(task, out["first"], None)
    check_values_in_range(task, out["last"], None)
    assert not out["solved_at_start"].any()


def test_blocked_unlock_pickup_always_has_a_key():
    out = expert_runs("MiniGrid-BlockedUnlockPickUp")
    assert (out["first"]["tiles"] == Tiles.KEY).any(axis=(1, 2)).all()
    # and the ball blocks the door in every layout
    tiles = out["first"]["tiles"]
    door_rows, door_cols = np.nonzero(tiles == Tiles.DOOR_LOCKED)[1:]
    assert len(door_rows) == N_SEEDS
    blocker = tiles[np.arange(N_SEEDS), door_rows, door_cols - 1]
    assert np.isin(blocker, [Tiles.BALL, Tiles.SQUARE, Tiles.PYRAMID, Tiles.HEX, Tiles.STAR]).all()
    # the blocker is never a copy of the target object (picking it up would win at once)
    assert (out["target_copies"] == 1).all()


def assert_render_matches_frame(task, state) -> np.ndarray:
    """The VLM image, block-averaged to the small tile size, is the in-jit frame (within 1 level)."""
    img = task.render(state)
    frame = np.asarray(jax.jit(lambda s: task.observe(s, "pixels")["frame"])(state))
    h, w = task.height, task.width
    assert img.shape == ((h + 1) * BIG_PX, w * BIG_PX, 3) and img.dtype == np.uint8
    assert frame.shape == ((h + 1) * SMALL_PX, w * SMALL_PX, 3) and frame.dtype == np.uint8
    f = BIG_PX // SMALL_PX
    down = (
        img.reshape(img.shape[0] // f, f, img.shape[1] // f, f, 3).astype(float).mean(axis=(1, 3))
    )
    assert np.abs(down - frame).max() <= 1.0
    # the agent is drawn in red in its cell
    pos = np.asarray(state.agent.position)
    cell = frame[
        pos[0] * SMALL_PX : (pos[0] + 1) * SMALL_PX, pos[1] * SMALL_PX : (pos[1] + 1) * SMALL_PX
    ]
    assert (cell == (255, 0, 0)).all(-1).sum() >= 4
    # what is carried shows in the inventory cell, and only then
    inv = frame[h * SMALL_PX :, :SMALL_PX]
    assert (inv.max() > 0) == (int(state.agent.pocket[0]) != Tiles.EMPTY)
    return img


def test_goal_state_and_render_match_jit_frame():
    task = envs.make("MiniGrid-DoorKey-5x5")
    goal = task.goal_state(jax.random.key(3))
    assert bool(task.success(goal)) and int(goal.agent.pocket[0]) == Tiles.KEY
    first = assert_render_matches_frame(task, task.initial_state(jax.random.key(3)))
    last = assert_render_matches_frame(task, goal)
    assert np.abs(last.astype(int) - first).sum() > 0


@pytest.mark.parametrize("task_id", ["MiniGrid-UnlockPickUp", "MiniGrid-BlockedUnlockPickUp"])
def test_expert_end_states_render_like_the_jit_frame(task_id):
    task = envs.make(task_id)
    states = expert_runs(task_id)["final_states"]
    for i in range(2):
        state = jax.tree.map(lambda x, i=i: x[i], states)
        assert bool(task.success(state))  # holding the target: it shows in the inventory cell
        assert_render_matches_frame(task, state)


def test_pixels_frame_under_vmap_shows_each_state():
    task = envs.make("MiniGrid-DoorKey-6x6")
    keys = jax.random.split(jax.random.key(0), 4)
    _, states = jax.jit(jax.vmap(task.reset, in_axes=(0, None)))(keys, task.params)
    frames = jax.jit(jax.vmap(lambda s: task.observe(s, "pixels")["frame"]))(states)
    assert frames.shape == (4, 7 * SMALL_PX, 6 * SMALL_PX, 3)
    for i in range(4):
        one = jax.tree.map(lambda x, i=i: x[i], states)
        img = task.render(one)
        down = (
            img.reshape(img.shape[0] // 4, 4, img.shape[1] // 4, 4, 3)
            .astype(float)
            .mean(axis=(1, 3))
        )
        assert np.abs(down - np.asarray(frames[i])).max() <= 1.0


def test_truncation_at_max_steps_apart_from_termination():
    task = envs.make("MiniGrid-Empty-8x8")
    _, state = task.reset(jax.random.key(0), task.params)

    @jax.jit
    def spin(state):
        def body(s, _):
            _, s, r, te, tr, _ = task.step(
                jax.random.key(0), s, jnp.asarray(1), task.params
            )  # turn right
            return s, (r, te, tr)

        return jax.lax.scan(body, state, None, task.max_steps)[1]

    r, te, tr = spin(state)
    assert not bool(te.any()) and float(r.sum()) == 0.0
    assert np.nonzero(np.asarray(tr))[0].tolist() == [task.max_steps - 1]


def test_constants_name_the_ids():
    task = envs.make("MiniGrid-DoorKey-8x8")
    c = task.constants("state")
    assert (c["KEY"], c["DOOR_LOCKED"], c["DOOR_OPEN"], c["GOAL"]) == (
        Tiles.KEY,
        Tiles.DOOR_LOCKED,
        Tiles.DOOR_OPEN,
        Tiles.GOAL,
    )
    assert c["YELLOW"] == 5 and c["DIR_RIGHT"] == 1 and c["GRID_HEIGHT"] == 8
    p = task.constants("pixels")
    assert p["YELLOW_RGB"] == (255, 255, 0) and p["TILE_PX"] == SMALL_PX and p["INVENTORY_ROW"] == 8
    assert "KEY" not in p  # pixels mode carries no symbolic ids
    with pytest.raises(TaskError, match="no input mode 'rgb'.*state, pixels"):
        task.inputs("rgb")
