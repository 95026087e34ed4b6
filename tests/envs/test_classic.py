"""Classic-control tasks: API under jit+vmap, input spec, expert success, goal states, renders."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from _task_checks import check_render, check_spec_exact, check_values_in_range, check_vmapped_api

import envs
from car_jax.rollout import collect_rollouts

IDS = ["MountainCar-v0", "MountainCarContinuous-v0", "CartPole-v1", "Acrobot-v1"]


@pytest.mark.parametrize("task_id", IDS)
def test_vmapped_api(task_id):
    task = envs.make(task_id)
    assert task.family == "classic" and task.modes == ("state",)
    check_vmapped_api(task)
    check_spec_exact(task)


@pytest.mark.parametrize("task_id", IDS)
def test_expert_succeeds_on_256_seeds(task_id):
    task = envs.make(task_id)
    traj = collect_rollouts(task, "expert", jax.random.key(7), n=256)
    rate = float(traj.success.mean())
    assert rate >= 0.99, f"{task_id}: expert success {rate:.3f}"
    check_values_in_range(task, traj.inputs, traj.valid)


@pytest.mark.parametrize("task_id", IDS)
def test_random_policy_rarely_succeeds(task_id):
    task = envs.make(task_id)
    traj = collect_rollouts(task, "random", jax.random.key(3), n=64)
    assert float(traj.success.mean()) <= 0.2
    check_values_in_range(task, traj.inputs, traj.valid)


@pytest.mark.parametrize("task_id", IDS)
def test_goal_state_is_success_and_renders_differ(task_id):
    task = envs.make(task_id)
    goal = task.goal_state(jax.random.key(1))
    assert bool(task.success(goal))
    assert not bool(task.success(task.initial_state(jax.random.key(1))))
    first = check_render(task)
    last = task.render(goal)
    assert last.shape == first.shape and np.abs(last.astype(int) - first).sum() > 0


def test_truncation_and_termination_kept_apart():
    task = envs.make("CartPole-v1")
    traj = collect_rollouts(task, "expert", jax.random.key(0), n=2)
    # The expert survives: the episode ends by the time limit (truncation), state t=500 is valid.
    assert traj.valid.shape == (2, task.max_steps + 1) and bool(traj.valid.all())
    assert int(traj.inputs["time"][0, -1]) == task.max_steps
    _, s = task.reset(jax.random.key(0), task.params)
    s = s.replace(env=s.env.replace(theta=0.5))  # pole fallen
    _, _, _, term, trunc, _ = task.step(jax.random.key(1), s, 1, task.params)
    assert bool(term) and not bool(trunc)


def test_constants_name_thresholds():
    assert envs.make("MountainCar-v0").constants("state")["GOAL_POSITION"] == pytest.approx(0.5)
    assert envs.make("MountainCarContinuous-v0").constants("state")[
        "GOAL_POSITION"
    ] == pytest.approx(0.45)
    assert envs.make("Acrobot-v1").constants("state")["GOAL_HEIGHT"] == 1.0
    with pytest.raises(envs.TaskError, match="pixels"):
        envs.make("CartPole-v1").inputs("pixels")
