"""Reward fusion: CodeReward pays each sub-task bonus once, in order, and resets with the episode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from car_jax.errors import UserError
from car_jax.reward import CodeReward
from car_jax.spec import RewardSpec, compile_spec

TASK_ID = "MiniGrid-DoorKey-5x5"
SPEC = '''"""Pick up the key, open the door, then reach the goal square."""


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
N, T = 8, 40


@pytest.fixture(scope="module")
def task():
    return envs.make(TASK_ID)


@pytest.fixture(scope="module")
def compiled(task):
    return compile_spec(RewardSpec.from_source(SPEC), task.inputs("state"), task.constants("state"))


@pytest.fixture(scope="module")
def actions(task):
    """Expert and random action sequences [N, T], recorded once from the bare task.

    Replaying them through each CodeReward variant reproduces the same episodes (the env step is
    deterministic given the keys) without compiling the BFS expert into every variant.
    """

    def episode(key, expert: bool):
        key, k0 = jax.random.split(key)
        _, state = task.reset(k0, task.params)

        def body(carry, _):
            state, key = carry
            key, k_a, k_s = jax.random.split(key, 3)
            action = task.expert(k_a, state, task.params) if expert else task.action.sample(k_a)
            _, new, *_ = task.step(k_s, state, action, task.params)
            return (new, key), action

        return jax.lax.scan(body, (state, key), None, length=T)[1]

    keys = jax.random.split(jax.random.key(1), N)
    return {
        "expert": jax.jit(jax.vmap(lambda k: episode(k, True)))(keys),
        "random": jax.jit(jax.vmap(lambda k: episode(k, False)))(keys),
    }


def _episodes(env, actions):
    """Replay [N, T] actions through `env`, stopping each env at its first episode end."""

    def episode(key, acts):
        key, k0 = jax.random.split(key)
        _, state = env.reset(k0, env.params)

        def body(carry, action):
            state, ended, key = carry
            key, _, k_s = jax.random.split(key, 3)
            _, new, r, term, trunc, info = env.step(k_s, state, action, env.params)
            new = jax.tree.map(lambda a, b: jnp.where(ended, b, a), new, state)
            out = (jnp.where(ended, 0.0, r), jnp.where(ended, 0.0, info["code_reward"]),
                   info["subtask_done"], ~ended, new.next_subtask)  # fmt: skip
            return (new, ended | term | trunc, key), out

        _, outs = jax.lax.scan(body, (state, jnp.bool_(False), key), acts)
        return outs

    return jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(1), N), actions)


def test_bonuses_paid_once_each_in_order(task, compiled, actions):
    env = CodeReward(task, compiled, bonus=(0.25, 0.5, 1.0))
    reward, code, done_flags, valid, idx = (
        np.asarray(a) for a in _episodes(env, actions["expert"])
    )
    for i in range(N):
        paid = np.nonzero(code[i])[0]
        # Exactly three payments, one per sub-task, with the right amounts in order.
        assert code[i][paid].tolist() == [0.25, 0.5, 1.0]
        # The index advances exactly at the payments and the flags follow it.
        assert np.all(np.diff(idx[i][valid[i]]) >= 0) and idx[i][valid[i]][-1] == 3
        assert done_flags[i][paid[0]].tolist() == [True, False, False]
        assert done_flags[i][paid[2]].tolist() == [True, True, True]
        # The env's sparse reward is kept and added on the final step.
        last = np.nonzero(valid[i])[0][-1]
        assert reward[i][last] > 1.0 and paid[2] == last


def test_index_resets_with_the_episode(task, compiled):
    env = CodeReward(task, compiled)
    _, state = env.reset(jax.random.key(0), env.params)
    assert int(state.next_subtask) == 0
    assert state.env_state is not None


def test_out_of_order_completion_earns_nothing_until_its_turn(task, compiled, actions):
    # Door first, then key: the key is picked up before the door opens, so no bonus for it then.
    src = (
        SPEC.split("def picked_up_key")[0]
        + "def opened_door"
        + SPEC.split("def opened_door")[1].split("def reached_goal")[0]
    )
    src += "def picked_up_key" + SPEC.split("def picked_up_key")[1].split("def opened_door")[0]
    spec = RewardSpec.from_source(src)
    assert spec.names == ["opened_door", "picked_up_key"]
    comp = compile_spec(spec, task.inputs("state"), task.constants("state"))
    env = CodeReward(task, comp, bonus=1.0)
    _, code, _, valid, idx = (np.asarray(a) for a in _episodes(env, actions["expert"]))
    for i in range(N):
        paid = np.nonzero(code[i])[0]
        assert len(paid) == 2 and paid[1] == paid[0] + 1  # key paid on the step after the door


def test_potential_shaping_telescopes(task, compiled, actions):
    gamma = 0.9
    env = CodeReward(task, compiled, shaping="potential", gamma=gamma, env_weight=0.0)
    _, code, _, valid, idx = (np.asarray(a) for a in _episodes(env, actions["expert"]))
    for i in range(N):
        v = valid[i]
        t = np.arange(v.sum())
        # Discounted sum of gamma*Phi(s') - Phi(s) = gamma^T Phi(s_T) - Phi(s_0).
        disc = np.sum(gamma**t * code[i][v])
        assert disc == pytest.approx(gamma ** len(t) * idx[i][v][-1] / 3, abs=1e-4)


def test_random_policy_earns_less(task, compiled, actions):
    env = CodeReward(task, compiled)
    _, code, *_ = (np.asarray(a) for a in _episodes(env, actions["random"]))
    assert code.sum(axis=1).mean() < 1.5  # the expert earns 1.5 in every episode


def test_bad_arguments_are_refused(task, compiled):
    with pytest.raises(UserError, match="shaping"):
        CodeReward(task, compiled, shaping="dense")
    with pytest.raises(UserError, match="2 bonuses for 3 sub-tasks"):
        CodeReward(task, compiled, bonus=(1.0, 2.0))
    with pytest.raises(UserError, match="no input mode"):
        CodeReward(task, compiled, mode="rgb")
