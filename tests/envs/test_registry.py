"""The task registry: every built-in id is registered once; duplicates and unknown ids refused."""

from __future__ import annotations

import pytest

import envs
from envs import TaskError

BUILT_IN = [
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "CartPole-v1",
    "Acrobot-v1",
    "Breakout-MinAtar",
    "Freeway-MinAtar",
    "reacher",
    "pusher",
]


def test_built_in_tasks_registered():
    ids = envs.registered()
    for task_id in BUILT_IN:
        assert task_id in ids
    assert len(ids) == len(set(ids))


def test_make_returns_the_task_with_its_id():
    for task_id in BUILT_IN:
        task = envs.make(task_id)
        assert task.id == task_id and task is envs.make(task_id)
        assert task.max_steps > 0 and task.modes


def test_duplicate_refused():
    with pytest.raises(TaskError, match="'CartPole-v1' is already registered"):
        envs.register("CartPole-v1", lambda: None)


def test_unknown_refused_with_the_list():
    with pytest.raises(TaskError, match="unknown task 'CartPole-v9'.*CartPole-v1"):
        envs.make("CartPole-v9")
