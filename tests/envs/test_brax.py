"""brax tasks: reacher fully (API, spec, expert, goal, render; the 256-seed expert check marked
slow); pusher smoke test (marked slow)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _task_checks import check_render, check_spec_exact, check_values_in_range, check_vmapped_api

import envs
from car_jax.rollout import collect_rollouts


@pytest.fixture(scope="module")
def reacher():
    return envs.make("reacher")


def test_reacher_api_and_spec(reacher):
    assert (
        reacher.family == "brax" and reacher.action.kind == "continuous" and reacher.action.dim == 2
    )
    check_vmapped_api(reacher, n=3, steps=2)
    check_spec_exact(reacher)


def test_reacher_inputs_agree_with_brax_observation(reacher):
    # brax's own observation holds fingertip - target in entries 8:10 and the target in 4:6.
    _, state = reacher.reset(jax.random.key(3), reacher.params)
    _, state, *_ = reacher.step(jax.random.key(4), state, jnp.array([0.5, -0.5]), reacher.params)
    obs = reacher.observe(state, "state")
    brax_obs = np.asarray(state.brax.obs)
    np.testing.assert_allclose(obs["fingertip"] - obs["target"], brax_obs[8:10], atol=1e-5)
    np.testing.assert_allclose(obs["target"], brax_obs[4:6], atol=1e-6)


# In `make test-all` only (about 50 s of brax compilation on 2 cores): `make test` runs the
# expert to success in test_reacher_goal_state_and_render.
@pytest.mark.slow
def test_reacher_expert_256_seeds_and_sparse_reward(reacher):
    expert = collect_rollouts(reacher, "expert", jax.random.key(7), n=256, horizon=75)
    random = collect_rollouts(reacher, "random", jax.random.key(7), n=32, horizon=75)
    assert float(expert.success.mean()) >= 0.99
    assert float(random.success.mean()) <= 0.1
    # The env reward is the sparse success reward: 1 exactly where the next state is solved.
    r = np.asarray(expert.reward)
    assert set(np.unique(r)) <= {0.0, 1.0} and r.sum() > 0
    check_values_in_range(reacher, expert.inputs, expert.valid)


def test_reacher_goal_state_and_render(reacher):
    goal = reacher.goal_state(jax.random.key(1))
    assert bool(reacher.success(goal))
    first = check_render(reacher)
    assert (reacher.render(goal) != first).any()


@pytest.mark.slow
def test_pusher_smoke():
    """Pusher compiles slowly on CPU (about 12 s for reset + step): smoke test only."""
    task = envs.make("pusher")
    check_spec_exact(task)
    _, state = jax.jit(task.reset, static_argnums=1)(jax.random.key(0), None)
    step = jax.jit(task.step, static_argnums=3)
    for i in range(3):
        _, state, reward, term, trunc, _ = step(jax.random.key(i), state, jnp.full(7, 0.3), None)
    obs = task.observe(state, "state")
    assert obs["joint_angles"].shape == (7,) and int(obs["time"]) == 3
    assert reward.dtype == jnp.float32 and not bool(term) and not bool(trunc)
    assert not bool(task.success(state))  # the object starts >= 0.17 m from the goal
    check_render(task)
