"""Reward fusion: CodeReward pays each sub-task once, in order, several on one step too (the
terminal step included), restarts with every episode inside training, and its potential shaping
telescopes to -Phi(s0) with the learner's gamma. With several pixel specs, each reads cell ids
(lazy frames) and pays what it pays on drawn frames."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from car_jax.errors import UserError
from car_jax.reward import CodeReward, add_progress
from car_jax.rl.config import PPOConfig
from car_jax.rl.ppo import PPOTrainer
from car_jax.spec import RewardSpec, compile_spec
from car_jax.sprite_inputs import task_sprite_frames
from envs.base import ActionSpace, InputField, Task

TASK_ID = "MiniGrid-DoorKey-5x5"
REFERENCE = Path(__file__).resolve().parents[1] / "prompts" / "reference"
# Key, door, goal: the hand-written reference state spec.
SPEC = REFERENCE / f"{TASK_ID}.state.py"
N, T = 8, 40


@pytest.fixture(scope="module")
def task():
    return envs.make(TASK_ID)


@pytest.fixture(scope="module")
def compiled(task):
    return compile_spec(RewardSpec.load(SPEC), task.inputs("state"), task.constants("state"))


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


def _episodes(env, actions, with_terminated=False, params=None):
    """Replay [N, T] actions through `env`, stopping each env at its first episode end."""
    params = env.params if params is None else params

    def episode(key, acts):
        key, k0 = jax.random.split(key)
        _, state = env.reset(k0, params)

        def body(carry, action):
            state, ended, key = carry
            key, _, k_s = jax.random.split(key, 3)
            _, new, r, term, trunc, info = env.step(k_s, state, action, params)
            new = jax.tree.map(lambda a, b: jnp.where(ended, b, a), new, state)
            out = (jnp.where(ended, 0.0, r), jnp.where(ended, 0.0, info["code_reward"]),
                   info["subtask_done"], ~ended, new.next_subtask, term)  # fmt: skip
            return (new, ended | term | trunc, key), out

        _, outs = jax.lax.scan(body, (state, jnp.bool_(False), key), acts)
        return outs if with_terminated else outs[:5]

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


def test_out_of_order_completion_earns_nothing_until_its_turn(task, compiled, actions):
    # Door first, then key: the key is picked up before the door opens, so no bonus for it then;
    # when the door opens the key is already carried, and both are paid on that one step.
    key, door, _ = RewardSpec.load(SPEC).programs
    spec = RewardSpec("Open the door, then pick up the key.", [door, key])
    assert spec.names == ["opened_door", "picked_up_key"]
    comp = compile_spec(spec, task.inputs("state"), task.constants("state"))
    env = CodeReward(task, comp, bonus=1.0)
    _, code, _, valid, idx = (np.asarray(a) for a in _episodes(env, actions["expert"]))
    for i in range(N):
        paid = np.nonzero(code[i])[0]
        assert len(paid) == 1 and code[i][paid[0]] == 2.0 and idx[i][paid[0]] == 2
        assert idx[i][paid[0] - 1] == 0  # nothing before the door, though the key was held


@pytest.mark.parametrize("policy", ["expert", "random"])
def test_potential_shaping_sums_to_minus_phi0_over_terminating_episodes(
    task, compiled, actions, policy
):
    gamma = 0.9
    env = CodeReward(task, compiled, bonus=(0.25, 0.5, 1.0), shaping="potential", gamma=gamma,
                     env_weight=0.0)  # fmt: skip
    _, code, _, valid, idx, terminated = (
        np.asarray(a) for a in _episodes(env, actions[policy], with_terminated=True)
    )
    phi = np.asarray(env.potential[0])  # Phi of the one spec, before each sub-task
    ended = 0
    for i in range(N):
        v = valid[i]
        disc = np.sum(gamma ** np.arange(v.sum()) * code[i][v])
        if terminated[i][v][-1]:  # Phi(s_T) = 0: the discounted sum is -Phi(s0) = 0
            assert disc == pytest.approx(0.0, abs=1e-5)
            ended += 1
        else:  # cut short by the horizon: gamma^T Phi(s_T) - Phi(s0)
            assert disc == pytest.approx(gamma ** v.sum() * phi[idx[i][v][-1]], abs=1e-5)
    assert ended == N if policy == "expert" else ended < N


def test_random_policy_earns_less(task, compiled, actions):
    env = CodeReward(task, compiled)
    _, code, *_ = (np.asarray(a) for a in _episodes(env, actions["random"]))
    assert code.sum(axis=1).mean() < 1.5  # the expert earns 1.5 in every episode


def test_several_pixel_specs_read_cell_ids_and_pay_as_on_drawn_frames(task, actions):
    # One CodeReward over four pixel specs: the reference and the reference without its key
    # sub-task (3 and 2 sub-tasks), each compiled with the sprite table (reads cell ids, no
    # frame drawn) and without it (reads the drawn frame). Rows 0/1 and 2/3 must pay alike.
    ref = RewardSpec.load(REFERENCE / "MiniGrid-DoorKey-5x5.pixels.py")
    no_key = RewardSpec(ref.task, ref.programs[1:])
    inputs, constants = task.inputs("pixels"), task.constants("pixels")
    sheets = task_sprite_frames(task, "pixels")
    specs = [compile_spec(spec, inputs, constants, sprite_frames=sprites)
             for spec in (ref, no_key) for sprites in (sheets, None)]  # fmt: skip
    env = CodeReward(task, specs, mode="pixels", bonus=0.5)
    assert env._reads_cells == (True, False, True, False)

    def replay(spec):
        return _episodes(env, actions["expert"], params=env.with_spec(env.params, spec))

    reward, code, done_flags, valid, idx = (
        np.asarray(a) for a in jax.jit(jax.vmap(replay))(jnp.arange(4))
    )
    for lazy, drawn in ((0, 1), (2, 3)):
        for got in (reward, code, done_flags, valid, idx):
            np.testing.assert_array_equal(got[lazy], got[drawn])
    # The expert completes every sub-task: 3 x 0.5 with the reference, 2 x 0.5 without the key.
    np.testing.assert_allclose(code[0].sum(axis=1), 1.5, rtol=1e-6)
    np.testing.assert_allclose(code[2].sum(axis=1), 1.0, rtol=1e-6)
    assert not done_flags[2][..., 2].any()  # the padded third sub-task never counts


def test_bad_arguments_are_refused(task, compiled):
    with pytest.raises(UserError, match="shaping"):
        CodeReward(task, compiled, shaping="dense")
    with pytest.raises(UserError, match="2 bonuses for 3 sub-tasks"):
        CodeReward(task, compiled, bonus=(1.0, 2.0))
    with pytest.raises(UserError, match="no input mode"):
        CodeReward(task, compiled, mode="rgb")


# --- a counter task: sub-tasks that complete together, on the terminal step too ------------------


class Counter(Task):
    """Counts steps; the episode terminates after `length` steps and then counts as solved."""

    id = "Counter"
    family = "test"
    length = 3
    max_steps = 3
    modes = ("state",)
    action = ActionSpace("discrete", n=2)
    obs_shape = (2,)
    obs_dtype = "float32"

    def reset(self, key, params):
        t = jnp.zeros((), jnp.int32)
        return jnp.zeros((2,), jnp.float32), t

    def step(self, key, t, action, params):
        t = t + 1
        obs = jnp.stack([t, action]).astype(jnp.float32)
        return obs, t, jnp.zeros(()), t >= self.length, jnp.zeros((), bool), {}

    def inputs(self, mode):
        return {"t": InputField((), "int32", "steps taken")}

    def observe(self, t, mode):
        return {"t": t}

    def success(self, t):
        return t >= self.length


def _counter_reward(thresholds, **kwargs):
    """CodeReward over Counter with one sub-task `obs.t >= th` per threshold."""
    src = '"""Count."""\n' + "".join(
        f'\n\ndef at_{i}(obs):\n    """t reached {th}."""\n    return obs.t >= {th}\n'
        for i, th in enumerate(thresholds)
    )
    task = Counter()
    comp = compile_spec(RewardSpec.from_source(src), task.inputs("state"), {})
    return CodeReward(task, comp, **kwargs)


def _counter_episode(env, steps):
    """Code rewards and sub-task indices over `steps` steps from a reset (no auto-reset)."""
    _, state = env.reset(jax.random.key(0), env.params)
    codes, idxs = [], []
    for _ in range(steps):
        _, state, _, term, _, info = env.step(jax.random.key(0), state, 1, env.params)
        codes.append(float(info["code_reward"]))
        idxs.append(int(state.next_subtask))
    return codes, idxs, bool(term)


def test_all_subtasks_completing_on_one_step_are_paid():
    # Sub-tasks 0 and 1 complete together on step 1; 2 and 3 together on the terminal step 3.
    env = _counter_reward((1, 1, 3, 3), bonus=(0.1, 0.2, 0.4, 0.8), env_weight=0.0)
    codes, idxs, terminated = _counter_episode(env, 3)
    assert terminated
    np.testing.assert_allclose(codes, [0.1 + 0.2, 0.0, 0.4 + 0.8], rtol=1e-6)
    assert idxs == [2, 2, 4]


def test_potential_uses_the_bonuses_and_is_zero_at_termination():
    env = _counter_reward((1, 1, 3), bonus=(0.1, 0.2, 0.4), shaping="potential", gamma=0.5)
    codes, _, _ = _counter_episode(env, 3)
    # Phi: 0 -> 0.3 -> 0.3 -> (terminal) 0.
    np.testing.assert_allclose(codes, [0.5 * 0.3, 0.5 * 0.3 - 0.3, 0.0 - 0.3], rtol=1e-6)
    assert sum(0.5**t * c for t, c in enumerate(codes)) == pytest.approx(0.0, abs=1e-7)


def test_ppo_binds_its_traced_gamma_and_restarts_the_index_every_episode():
    env = _counter_reward((1, 1, 3), bonus=(0.1, 0.2, 0.4), env_weight=0.0)
    cfg = PPOConfig(num_envs=4, num_steps=6, total_timesteps=4 * 6 * 2, num_minibatches=2,
                    eval_episodes=4)  # fmt: skip
    trainer = PPOTrainer(cfg, env)
    # The learner's gamma, traced, reaches the potential: vmapped over two values.
    shaped = _counter_reward((1, 1, 3), bonus=(0.1, 0.2, 0.4), shaping="potential", gamma=0.99)
    bound = jax.vmap(lambda g: PPOTrainer(cfg, shaped).env_params(cfg.hyper(gamma=g)).gamma)(
        jnp.asarray([0.5, 0.8])
    )
    np.testing.assert_allclose(np.asarray(bound), [0.5, 0.8])

    # Inside training every episode (3 steps, auto-reset after each) pays all three sub-tasks:
    # 6 steps per env = 2 episodes, each paying 0.7, so 1.4 / 6 per step on average.
    runner = trainer.init(jax.random.key(0))
    _, metrics = jax.jit(lambda r: trainer.run(r, 2))(runner)
    np.testing.assert_allclose(np.asarray(metrics["mean_code_reward"]), 1.4 / 6, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(metrics["train_subtask_rate"]), 1.0)
    np.testing.assert_array_equal(np.asarray(metrics["train_episodes"]), 4 * 2)
    np.testing.assert_array_equal(np.asarray(metrics["eval_greedy_subtask_rate"][-1]), 1.0)


def test_progress_observation_shows_the_next_subtask():
    env = _counter_reward((1, 1, 3), progress_obs=True)
    assert env.obs_shape == (2 + 4,)
    assert env.obs_constant_channels == 0  # a vector: the one-hot is appended, not a plane
    obs, state = env.reset(jax.random.key(0), env.params)
    np.testing.assert_array_equal(obs[2:], [1, 0, 0, 0])
    obs, *_ = env.step(jax.random.key(0), state, 1, env.params)
    np.testing.assert_array_equal(obs[2:], [0, 0, 1, 0])  # two sub-tasks done on step 1
    # Beside a paying spec, a sparse baseline (code weight 0) is shown no progress.
    both = CodeReward(env.task, [env.specs[0]] * 2, code_weight=(1.0, 0.0), progress_obs=True)
    for spec, progress in ((0, [0, 0, 1, 0]), (1, [1, 0, 0, 0])):
        params = both.with_spec(both.params, spec)
        _, state = both.reset(jax.random.key(0), params)
        obs, state, *_ = both.step(jax.random.key(0), state, 1, params)
        np.testing.assert_array_equal(obs[2:], progress)
        assert int(state.next_subtask) == 2  # the baseline still logs its sub-tasks
    grid = add_progress(jnp.zeros((3, 3, 2), jnp.uint8), jnp.int32(2), 3)
    assert grid.shape == (3, 3, 3) and int(grid[..., 2].min()) == int(grid[..., 2].max()) == 2
    planes = add_progress(jnp.zeros((3, 3, 1), bool), jnp.int32(1), 3)
    np.testing.assert_array_equal(planes[0, 0], [False, False, True, False, False])


def test_carried_object_is_drawn_in_the_agents_cell_on_every_step(task, compiled, actions):
    """The expert's episodes pick up the key: from then on the view's agent cell shows it."""
    plain = CodeReward(task, compiled)
    carried = CodeReward(task, compiled, carried_obs=True, progress_obs=True)
    assert carried.observation_meta() == {"progress": True, "carried": True}
    # the progress plane is declared constant over the grid (the torso embeds it once)
    assert (carried.obs_constant_channels, plain.obs_constant_channels) == (1, 0)

    def episode(key, acts):
        _, k0 = jax.random.split(key)
        seen_plain, s_plain = plain.reset(k0, plain.params)
        seen, s = carried.reset(k0, carried.params)

        def body(carry, action):
            s_plain, s = carry
            o_plain, s_plain, *_ = plain.step(key, s_plain, action, plain.params)
            o, s, *_ = carried.step(key, s, action, carried.params)
            return (s_plain, s), (o_plain, o, s.env_state.agent.pocket, s.next_subtask)

        _, outs = jax.lax.scan(body, (s_plain, s), acts)
        return (seen_plain, seen), outs

    first, (o_plain, o, pocket, idx) = jax.jit(jax.vmap(episode))(
        jax.random.split(jax.random.key(1), N), actions["expert"]
    )
    np.testing.assert_array_equal(first[1][..., :2], first[0])  # nothing carried after reset
    holds = np.asarray(pocket[..., 0] != 0)  # Tiles.EMPTY
    assert holds.any() and (~holds).any()  # the expert picks the key up within T steps
    agent_cell = np.asarray(o[:, :, 6, 3, :2])
    np.testing.assert_array_equal(agent_cell[holds], np.asarray(pocket)[holds])
    np.testing.assert_array_equal(agent_cell[~holds], np.asarray(o_plain)[:, :, 6, 3][~holds])
    rest = np.ones((7, 7), bool)
    rest[6, 3] = False
    np.testing.assert_array_equal(np.asarray(o)[:, :, rest, :2], np.asarray(o_plain)[:, :, rest])
    progress = np.broadcast_to(np.asarray(idx)[:, :, None, None], o.shape[:-1])
    np.testing.assert_array_equal(np.asarray(o)[..., 2], progress)  # still the last channel


def test_carried_obs_is_refused_where_nothing_is_carried():
    with pytest.raises(UserError, match="carried_obs: task 'Counter' .* no carried object"):
        _counter_reward((1,), carried_obs=True)
