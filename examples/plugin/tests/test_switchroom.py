"""The example plugin's own tests: the task keeps the Task contract, the expert solves it, the
primitive reads frames, and the reference specs (one calls the primitive) pass verification.

Run from the car-jax checkout: `.venv/bin/python -m pytest examples/plugin/tests`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import switchroom.task  # noqa: F401  (registers colours_touch and SwitchRoom-7x7)
from switchroom.task import REFERENCE_DIR, TASK_ID

import envs
from car_jax.dsl import DSLCompileError, compile_program
from car_jax.spec import RewardSpec
from car_jax.verify import collect_verification_rollouts, verify_spec


@pytest.fixture(scope="module")
def task():
    return envs.make(TASK_ID)


def test_reset_step_observe_under_jit_and_vmap(task):
    keys = jax.random.split(jax.random.key(0), 4)
    obs, state = jax.jit(jax.vmap(task.reset, in_axes=(0, None)))(keys, task.params)
    assert obs.shape == (4, *task.obs_shape) and obs.dtype == jnp.float32
    step = jax.jit(jax.vmap(task.step, in_axes=(0, 0, 0, None)))
    obs, state, reward, term, trunc, _ = step(keys, state, jnp.array([0, 1, 2, 3]), task.params)
    assert reward.dtype == jnp.float32 and term.dtype == jnp.bool_ and trunc.dtype == jnp.bool_
    for mode in task.modes:
        out = jax.vmap(lambda s, m=mode: task.observe(s, m))(state)
        for name, field in task.inputs(mode).items():
            assert out[name].shape == (4, *field.shape) and out[name].dtype == field.dtype


def test_the_expert_turns_the_switch_on_then_reaches_the_goal(task):
    for seed in range(5):
        goal = task.goal_state(jax.random.key(seed))
        assert bool(goal.switch_on) and bool(task.success(goal))
        assert np.array_equal(goal.agent, goal.goal)
    assert task.render(goal).shape == (224, 224, 3)


def test_colours_touch_on_hand_made_frames():
    src = 'def touch(obs):\n    """Red touches blue."""\n    return colours_touch(obs.frame, RED, BLUE)\n'
    inputs = {"frame": ((4, 4, 3), "uint8", "a tiny frame")}
    prog = compile_program(src, inputs, {"RED": (255, 0, 0), "BLUE": (0, 0, 255)})
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[1, 1], frame[1, 3] = (255, 0, 0), (0, 0, 255)  # one pixel apart: not touching
    assert not bool(prog.fn({"frame": jnp.asarray(frame)}))
    frame[1, 2] = (0, 0, 255)  # now beside the red pixel
    assert bool(prog.fn({"frame": jnp.asarray(frame)}))
    frame[1, 2], frame[2, 2] = 0, (0, 0, 255)  # diagonal neighbours do not count
    assert not bool(prog.fn({"frame": jnp.asarray(frame)}))


def test_colours_touch_needs_constant_colours(task):
    src = 'def bad(obs):\n    """."""\n    return colours_touch(obs.frame, obs.frame[0, 0], GOAL_RGB)\n'
    with pytest.raises(DSLCompileError, match="colour"):
        compile_program(src, task.inputs("pixels"), task.constants("pixels"))


@pytest.mark.parametrize("mode", ["state", "pixels"])
def test_reference_specs_pass_verification(task, mode):
    spec = RewardSpec.load(REFERENCE_DIR / f"{TASK_ID}.{mode}.py")
    expert, random = collect_verification_rollouts(task, mode, n=32)
    verdict = verify_spec(spec, task, expert, random)
    assert verdict.passed, verdict.to_markdown()
