"""PPO learns probe tasks with known answers (discrete, continuous, grid, value, time limit)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from probe_envs import ContinuousTarget, GridBandit, OffsetValueProbe, TimeLimitProbe, ValueProbe

from car_jax.errors import UserError
from car_jax.rl import networks, obs_norm
from car_jax.rl.config import PPOConfig
from car_jax.rl.ppo import PPOTrainer, make_train

SMALL = PPOConfig(
    num_envs=16,
    num_steps=4,
    total_timesteps=16 * 4 * 12,
    num_minibatches=2,
    update_epochs=4,
    lr=1e-2,
)  # equals jobs.small_config(), which the shared `bandit_run` fixture trains


def _probs(trainer, params, obs):
    logits, _ = trainer.network.apply(params, obs)
    return jax.nn.softmax(logits, axis=-1)


def _seed(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_bandit_policy_picks_the_paying_action(bandit_run):
    trainer, _, out, _ = bandit_run
    for s in (0, 1):
        p = _probs(trainer, _seed(out.params, s), jnp.zeros((1, 1)))
        assert float(p[0, 1]) > 0.9
    m = out.metrics
    assert m["train_success_rate"].shape == (3, SMALL.num_updates)
    assert np.all(np.asarray(m["train_success_rate"][:2, -1]) > 0.9)
    np.testing.assert_array_equal(m["train_episode_length"], 1.0)
    np.testing.assert_allclose(m["train_episode_return"], m["train_success_rate"])
    # Per-sub-task rates come from info["subtask_done"] at episode ends.
    assert m["train_subtask_rate"].shape == (3, SMALL.num_updates, 2)
    np.testing.assert_allclose(m["train_subtask_rate"][..., 0], m["train_success_rate"])
    np.testing.assert_array_equal(m["train_subtask_rate"][..., 1], 0.0)
    np.testing.assert_array_equal(m["train_episodes"], SMALL.batch_size)


def test_traced_lr_zero_leaves_params_at_init(bandit_run):
    trainer, keys, out, _ = bandit_run
    init = jax.jit(trainer.init)(keys[2]).params
    for a, b in zip(jax.tree.leaves(init), jax.tree.leaves(_seed(out.params, 2)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    p = _probs(trainer, _seed(out.params, 2), jnp.zeros((1, 1)))
    assert abs(float(p[0, 1]) - 0.5) < 0.05


def test_progress_fn_runs_at_a_stride(bandit_run):
    _, _, _, calls = bandit_run
    updates = sorted(u for u, _ in calls)
    assert updates == [4, 4, 4, 8, 8, 8, 12, 12, 12]  # 3 seeds x every 4th of 12 updates
    assert "train_episode_return" in calls[0][1]


def test_value_probe_learns_state_values():
    cfg = SMALL.replace(lr=5e-3, total_timesteps=16 * 4 * 20)
    trainer = PPOTrainer(cfg, ValueProbe())
    out = jax.jit(trainer.train)(jax.random.key(1))
    _, v = trainer.network.apply(out.params, jnp.array([[1.0], [-1.0]]))
    np.testing.assert_allclose(np.asarray(v), [1.0, -1.0], atol=0.1)


def test_running_statistics_equal_those_of_all_batches_at_once():
    batches = jax.random.normal(jax.random.key(0), (3, 40, 2, 3)) * jnp.array([1.0, 5.0, 0.1]) + 7
    stats = obs_norm.init(batches[0].reshape(-1, 2, 3)[:5])  # uneven batch sizes: 5, 35, 40, 40
    stats = obs_norm.update(stats, batches[0].reshape(-1, 2, 3)[5:])
    for b in batches[1:]:
        stats = obs_norm.update(stats, b)
    every = batches.reshape(-1, 2, 3)
    np.testing.assert_allclose(stats.mean, every.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, every.var(0), rtol=1e-4)
    assert float(stats.count) == 120
    z = obs_norm.normalize(stats, every)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)


def test_normalized_observations_let_a_badly_scaled_probe_learn_its_values():
    """obs = 50 +- 0.05: standardised, the two states are -1 and +1 to the network."""
    cfg = SMALL.replace(lr=5e-3, total_timesteps=16 * 4 * 20, normalize_obs=True)
    trainer = PPOTrainer(cfg, OffsetValueProbe())
    out = jax.jit(trainer.train)(jax.random.key(1))
    stats = out.params["obs_norm"]
    # Every observation collected is merged once (the resets first), none after the last update.
    assert float(stats.count) == cfg.num_envs + cfg.num_updates * cfg.batch_size
    np.testing.assert_allclose(stats.mean, 50.0, atol=0.01)
    np.testing.assert_allclose(jnp.sqrt(stats.var), 0.05, rtol=0.05)
    _, v = trainer.policy(out.params, jnp.array([[50.05], [49.95]]))
    np.testing.assert_allclose(np.asarray(v), [1.0, -1.0], atol=0.1)
    # Without it the same run cannot tell the two states apart: both values sit near their mean.
    raw = PPOTrainer(cfg.replace(normalize_obs=False), OffsetValueProbe())
    raw_out = jax.jit(raw.train)(jax.random.key(1))
    _, v_raw = raw.policy(raw_out.params, jnp.array([[50.05], [49.95]]))
    assert abs(float(v_raw[0] - v_raw[1])) < 0.1 and max(abs(np.asarray(v_raw))) < 0.5


def test_normalize_obs_is_refused_for_integer_observations():
    with pytest.raises(UserError, match="normalize_obs needs float observations.*uint8"):
        PPOTrainer(SMALL.replace(normalize_obs=True), GridBandit())


def test_continuous_probe_finds_the_target_action():
    cfg = PPOConfig(
        num_envs=32,
        num_steps=8,
        total_timesteps=32 * 8 * 40,
        num_minibatches=2,
        lr=1e-2,
        ent_coef=0.0,
    )
    trainer = PPOTrainer(cfg, ContinuousTarget())
    out = jax.jit(trainer.train)(jax.random.key(2))
    (mean, log_std), _ = trainer.network.apply(out.params, jnp.zeros((1, 1)))
    np.testing.assert_allclose(np.asarray(mean[0]), ContinuousTarget.target, atol=0.1)
    assert float(log_std.max()) < 0.0  # exploration shrank
    returns = out.metrics["train_episode_return"]
    assert float(returns[-1]) > -0.15 > float(returns[0])  # from about -1.3 to the noise floor


def test_grid_observation_uses_embeddings_and_learns():
    trainer = PPOTrainer(SMALL.replace(total_timesteps=16 * 4 * 25), GridBandit())
    assert isinstance(trainer.network.torso, networks.GridEmbedTorso)
    out = jax.jit(trainer.train)(jax.random.key(3))
    keys = jax.random.split(jax.random.key(5), 12)
    obs = jax.vmap(lambda k: GridBandit().reset(k, None)[0])(keys)
    right = obs[:, 1, 1, 0].astype(jnp.int32) - 1
    p = _probs(trainer, out.params, obs)
    assert float(jnp.take_along_axis(p, right[:, None], axis=1).min()) > 0.8
    assert float(out.metrics["train_success_rate"][-1]) > 0.8


def test_truncation_bootstrap_gives_the_infinite_horizon_value():
    """Reward 1 forever, cut by a time limit at 8 steps: V = 1 / (1 - gamma) = 10 (bootstrapped).

    Without the bootstrap the value would be a finite-horizon average (about 3.7); the GAE unit
    tests cover that path.
    """
    cfg = PPOConfig(
        num_envs=16,
        num_steps=16,
        total_timesteps=16 * 16 * 50,
        num_minibatches=2,
        lr=3e-3,
        gamma=0.9,
    )
    trainer = PPOTrainer(cfg, TimeLimitProbe())
    out = jax.jit(trainer.train)(jax.random.key(4))
    _, v = trainer.network.apply(out.params, jnp.ones((1, 1)))
    assert float(v[0]) == pytest.approx(10.0, abs=0.5)


def test_network_factory_overrides_the_default():
    def factory(config, env):
        return networks.ActorCritic(networks.FlattenTorso(), "discrete", env.action.n, hidden=(8,))

    trainer = PPOTrainer(SMALL, GridBandit(), network=factory)
    params = trainer.init(jax.random.key(0)).params["params"]
    assert "torso" not in params or not any("embed" in k for k in params["torso"])
    assert params["actor"]["Dense_0"]["kernel"].shape == (18, 8)
    train = make_train(SMALL.replace(total_timesteps=16 * 4), GridBandit(), network=factory)
    out = jax.eval_shape(train, jax.random.key(0))
    assert out.params["params"]["actor"]["Dense_0"]["kernel"].shape == (18, 8)


@pytest.mark.parametrize(
    "shape, dtype, torso",
    [
        ((4,), "float32", networks.FlattenTorso),
        ((7, 7, 2), "uint8", networks.GridEmbedTorso),
        ((10, 10, 4), "bool", networks.CNNTorso),
        ((10, 10, 4), "float32", networks.CNNTorso),
    ],
)
def test_torso_follows_observation(shape, dtype, torso):
    assert isinstance(networks.select_torso(SMALL, shape, dtype), torso)


def test_constant_channels_embedded_once_compute_the_per_cell_function():
    # A progress plane (one value over the grid) embedded once is the per-cell network with the
    # first layer's rows for that channel summed over the cells: the same function class.
    c, e, cells = 3, 4, 5 * 5
    cell_ids = jax.random.randint(jax.random.key(0), (6, 5, 5, c - 1), 0, 11)
    progress = jax.random.randint(jax.random.key(1), (6, 1, 1, 1), 0, 4)
    obs = jnp.concatenate([cell_ids, jnp.broadcast_to(progress, (6, 5, 5, 1))], -1)
    obs = obs.astype(jnp.uint8)
    cfg = SMALL.replace(embed_dim=e, hidden=(8,))
    per_cell = networks.select_torso(cfg, obs.shape[1:], "uint8", 1)  # the default
    once = networks.select_torso(cfg.replace(embed_constant_once=True), obs.shape[1:], "uint8", 1)
    assert per_cell.constant_channels == 0 and once.constant_channels == 1
    head = networks.MLP((8,), 3)
    net_a, net_b = (nn.Sequential([t, head]) for t in (per_cell, once))
    params = net_a.init(jax.random.key(2), obs)["params"]
    kernel = params["layers_1"]["Dense_0"]["kernel"].reshape(cells, c, e, 8)
    folded = jnp.concatenate(
        [kernel[:, : c - 1].reshape(cells * (c - 1) * e, 8), kernel[:, c - 1].sum(0)], axis=0
    )
    params_b = jax.tree.map(lambda x: x, params)
    params_b["layers_1"]["Dense_0"]["kernel"] = folded
    assert once.apply({"params": params_b["layers_0"]}, obs).shape == (6, cells * (c - 1) * e + e)
    np.testing.assert_allclose(
        net_b.apply({"params": params_b}, obs), net_a.apply({"params": params}, obs), atol=1e-5
    )
    with pytest.raises(UserError, match=r"obs_constant_channels=3 must lie in \[0, 3\)"):
        networks.select_torso(cfg.replace(embed_constant_once=True), obs.shape[1:], "uint8", 3)


def test_patch_conv_is_nn_conv_with_the_same_parameters():
    # The default CNN torso convolves by one matmul over 3x3 patches (fast under vmap over seeds);
    # it must be nn.Conv's function, on nn.Conv's parameter tree, edges (SAME padding) included.
    obs = jax.random.bernoulli(jax.random.key(1), 0.3, (3, 5, 6, 4))
    fast, lax = networks.CNNTorso((8, 4), "patches"), networks.CNNTorso((8, 4), "lax")
    params = lax.init(jax.random.key(2), obs)
    patch_tree = jax.tree.map(jnp.shape, jax.eval_shape(fast.init, jax.random.key(2), obs))
    assert patch_tree == jax.tree.map(jnp.shape, params)
    # non-zero biases, so a dropped or misplaced bias shows
    params = jax.tree.map(lambda p: p + 0.1, params)
    want = jax.jit(lax.apply)(params, obs)
    assert want.shape == (3, 5 * 6 * 4)
    np.testing.assert_allclose(jax.jit(fast.apply)(params, obs), want, rtol=1e-5, atol=1e-5)
    # and under vmap over seeds, each seed with its own parameters
    keys = jax.random.split(jax.random.key(3), 2)
    seeded = jax.vmap(lambda k: jax.tree.map(lambda p: p + jax.random.normal(k, p.shape), params))(
        keys
    )
    got = jax.jit(jax.vmap(fast.apply, in_axes=(0, None)))(seeded, obs)
    want = jax.jit(jax.vmap(lax.apply, in_axes=(0, None)))(seeded, obs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="conv_impl must be 'patches' or 'lax', got 'fft'"):
        SMALL.replace(conv_impl="fft")


def test_env_without_the_task_interface_is_refused():
    class NoStep:
        reset = params = action = obs_shape = obs_dtype = None

    with pytest.raises(UserError, match="has no attribute 'step'"):
        PPOTrainer(SMALL, NoStep())


def test_success_falls_back_to_the_task_success_method():
    class SuccessByMethod(ValueProbe):
        def success(self, state):
            return state.x > 0

    assert PPOTrainer(SMALL, SuccessByMethod())._info_keys == {"success": ()}
    assert PPOTrainer(SMALL, ValueProbe())._info_keys == {}
