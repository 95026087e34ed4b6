"""Stage 2: verification on real DoorKey-5x5 expert and random rollouts."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import envs
from car_jax.rollout import collect_rollouts
from car_jax.spec import RewardSpec, compile_spec
from car_jax.verify import Criteria, Verdict, completion_matrix, verify_spec

TASK_ID = "MiniGrid-DoorKey-5x5"
N = 48

GOOD = '''"""Pick up the key, open the door, then reach the goal square."""


def picked_up_key(obs):
    """The agent carries the key."""
    return obs.carried_tile == KEY


def opened_door(obs):
    """The door is open."""
    return contains(obs.tiles, DOOR_OPEN)


def reached_goal(obs):
    """The agent stands on the goal square."""
    return cell(obs.tiles, obs.agent_pos) == GOAL
'''


def _spec(*bodies: tuple[str, str]) -> RewardSpec:
    """A spec from (name, return-expression) pairs."""
    src = '"""A test spec."""\n'
    for name, expr in bodies:
        src += f'\n\ndef {name}(obs):\n    """{name}."""\n    return {expr}\n'
    return RewardSpec.from_source(src)


KEY = ("picked_up_key", "obs.carried_tile == KEY")
DOOR = ("opened_door", "contains(obs.tiles, DOOR_OPEN)")
GOAL = ("reached_goal", "cell(obs.tiles, obs.agent_pos) == GOAL")


@pytest.fixture(scope="module")
def task():
    return envs.make(TASK_ID)


@pytest.fixture(scope="module")
def rollouts(task):
    k_e, k_r = jax.random.split(jax.random.key(0))
    expert = collect_rollouts(task, "expert", k_e, N, mode="state")
    # Random runs get as long as the longest expert episode (as `car-jax verify` does).
    horizon = int(np.asarray(expert.valid).sum(axis=1).max())
    random = collect_rollouts(task, "random", k_r, N, horizon, mode="state")
    return expert, random


def _verify(task, rollouts, spec, **criteria):
    expert, random = rollouts
    return verify_spec(spec, task, expert, random, Criteria(**criteria))


def test_correct_spec_is_accepted_with_figures(task, rollouts):
    v = _verify(task, rollouts, RewardSpec.from_source(GOOD))
    assert v.passed, v.to_markdown()
    assert [s.name for s in v.subtasks] == ["picked_up_key", "opened_door", "reached_goal"]
    for s in v.subtasks:
        assert s.expert_rate == 1.0 and s.random_rate <= 0.10 and not s.reasons
    firsts = [s.first_step_mean for s in v.subtasks]
    assert firsts == sorted(firsts) and firsts[0] > 0
    assert v.order_fraction == 1.0
    assert v.success_precision >= 0.9 and v.success_recall >= 0.9


def test_always_true_program_is_rejected(task, rollouts):
    v = _verify(task, rollouts, _spec(("always", "True"), GOAL))
    s = v.subtasks[0]
    assert not v.passed and not s.passed and v.subtasks[1].passed
    assert s.random_rate == 1.0 and s.start_rate == 1.0
    text = " ".join(s.reasons)
    assert "random trajectories" in text and "first step" in text


def test_never_true_program_is_rejected(task, rollouts):
    v = _verify(task, rollouts, _spec(KEY, ("carries_ball", "obs.carried_tile == BALL"), GOAL))
    s = v.subtasks[1]
    assert not s.passed and s.expert_rate == 0.0
    assert "never fires on any expert trajectory" in s.reasons[0]


def test_wrong_colour_is_rejected(task, rollouts):
    # DoorKey's key is yellow: a program looking for a red key never fires.
    wrong = ("picked_up_red_key", "obs.carried_tile == KEY and obs.carried_color == RED")
    v = _verify(task, rollouts, _spec(wrong, DOOR, GOAL))
    assert not v.subtasks[0].passed and v.subtasks[0].expert_rate == 0.0
    assert all(s.passed for s in v.subtasks[1:])


def test_wrong_order_is_rejected(task, rollouts):
    v = _verify(task, rollouts, _spec(DOOR, KEY, GOAL))
    s = v.subtasks[1]
    assert not v.passed and not s.passed and s.order_rate == 0.0
    assert "before the previous sub-task `opened_door`" in s.reasons[0]
    assert v.order_fraction == 0.0


def test_final_program_disagreeing_with_success_is_rejected(task, rollouts):
    # Carrying the key is not the whole task: random runs that pick it up and then fail make
    # the final program fire without success (random_rate is lifted to isolate this check).
    v = _verify(task, rollouts, _spec(("solved", "obs.carried_tile == KEY")), random_rate=1.0)
    last = v.subtasks[-1]
    assert not last.passed and v.success_precision < 0.9 and v.success_recall == 1.0
    assert any("disagrees with the task's real success" in r for r in last.reasons)


def test_program_true_at_start_is_rejected(task, rollouts):
    v = _verify(
        task, rollouts, _spec(("door_exists", "contains(obs.tiles, DOOR_LOCKED) or True"), GOAL)
    )
    assert v.subtasks[0].start_rate == 1.0
    assert any("describes the initial state" in r for r in v.subtasks[0].reasons)


def test_batched_completion_equals_python_loop(task, rollouts):
    compiled = compile_spec(
        RewardSpec.from_source(GOOD), task.inputs("state"), task.constants("state")
    )
    expert, _ = rollouts
    small = jax.tree.map(lambda a: a[:3, :12] if a.ndim > 1 else a[:3], expert)
    batched = completion_matrix(compiled, small)  # [K, N, T]
    tiles_key = task.constants("state")
    n, t = small.valid.shape
    for i in range(n):
        for j in range(t):
            obs = {k: np.asarray(v[i, j]) for k, v in small.inputs.items()}
            valid = bool(small.valid[i, j])
            pos = tuple(obs["agent_pos"])
            ref = [
                obs["carried_tile"] == tiles_key["KEY"],
                bool((obs["tiles"] == tiles_key["DOOR_OPEN"]).any()),
                obs["tiles"][pos] == tiles_key["GOAL"],
            ]
            assert [bool(batched[k, i, j]) for k in range(3)] == [valid and r for r in ref]


def test_min_steps_and_verdict_round_trip(task, rollouts):
    v = _verify(task, rollouts, RewardSpec.from_source(GOOD), min_steps=1000)
    assert not v.passed and all(s.expert_rate == 0.0 for s in v.subtasks)
    again = Verdict.from_dict(json.loads(v.to_json()))
    assert again.to_markdown() == v.to_markdown()
    assert "| 1 | `picked_up_key` |" in v.to_markdown()
    assert "picked_up_key" in v.feedback()


def test_bad_criteria_are_refused():
    from car_jax.errors import UserError

    with pytest.raises(UserError, match="random_rate must be in"):
        Criteria(random_rate=1.5)
