"""MinAtar tasks: API under jit+vmap, input spec, scripted experts, goal states, renders."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _task_checks import check_render, check_spec_exact, check_values_in_range, check_vmapped_api

import envs
from car_jax.rollout import collect_rollouts

IDS = ["Breakout-MinAtar", "Freeway-MinAtar"]
_RANDOM = {}


def random_rollouts(task):
    """128 random episodes over the whole time limit, compiled once per task for this module."""
    if task.id not in _RANDOM:
        _RANDOM[task.id] = collect_rollouts(task, "random", jax.random.key(7), n=128)
    return _RANDOM[task.id]


@pytest.mark.parametrize("task_id", IDS)
def test_vmapped_api(task_id):
    task = envs.make(task_id)
    assert task.family == "minatar"
    check_vmapped_api(task)
    check_spec_exact(task)
    consts = task.constants("state")
    assert consts["GRID_SIZE"] == 10
    # Channel names are constants with their channel index, in image order.
    assert [consts[n.upper()] for n in task.channels] == list(range(len(task.channels)))


@pytest.mark.parametrize("task_id", IDS)
def test_image_matches_named_quantities(task_id):
    task = envs.make(task_id)
    traj = random_rollouts(task)
    n, t = traj.valid.shape
    image = np.asarray(traj.inputs["image"])
    if task_id == "Breakout-MinAtar":
        paddle = np.asarray(traj.inputs["paddle_col"])
        assert image[np.arange(n)[:, None], np.arange(t)[None], 9, paddle, 0].all()
        brick = image[..., task.constants("state")["BRICK"]].sum(axis=(2, 3))
        np.testing.assert_array_equal(brick, np.asarray(traj.inputs["bricks_left"]))
    else:
        row = np.asarray(traj.inputs["chicken_row"])
        assert image[np.arange(n)[:, None], np.arange(t)[None], row, 4, 0].all()

        # The vectorised image equals gymnax's own observation on every state.
        def run(key):
            _, state = task.reset(key, task.params)

            def body(state, k):
                a = task.action.sample(k)
                _, state, *_ = task.step(k, state, a, task.params)
                own = task.env.get_obs(state.env) > 0.5
                return state, (task.observe(state, "state")["image"], own)

            return jax.lax.scan(body, state, jax.random.split(key, 100))[1]

        mine, own = jax.jit(run)(jax.random.key(4))
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(own))


@pytest.mark.parametrize("task_id", IDS)
def test_expert_beats_random_on_256_seeds(task_id):
    task = envs.make(task_id)
    # Freeway's expert crosses twice within ~200 steps; Breakout's needs up to ~900 of 1000.
    horizon = 400 if task_id == "Freeway-MinAtar" else None
    expert = collect_rollouts(task, "expert", jax.random.key(7), n=256, horizon=horizon)
    random = random_rollouts(task)
    rate, rnd = float(expert.success.mean()), float(random.success.mean())
    assert rate >= 0.95, f"{task_id}: expert success {rate:.3f}"
    assert rnd <= 0.12, f"{task_id}: random success {rnd:.3f}"
    check_values_in_range(task, expert.inputs, expert.valid)


@pytest.mark.parametrize("task_id", IDS)
def test_goal_state_is_success_and_renders(task_id):
    task = envs.make(task_id)
    goal = task.goal_state(jax.random.key(1))
    assert bool(task.success(goal))
    first = check_render(task)
    last = task.render(goal)
    assert last.shape == first.shape and (last != first).any()
    if task_id == "Freeway-MinAtar":
        # The frame of the crossing shows the chicken on the goal row (column 4).
        cell, top = 32, 50
        assert tuple(last[top + cell // 2, 4 * cell + cell // 2]) == (240, 200, 0)
