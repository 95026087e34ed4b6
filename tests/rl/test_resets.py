"""The reset pool: episodes start from the same distribution as `reset`, from distinct entries."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from probe_envs import ProbeState
from scipy.stats import chi2_contingency

import envs
from car_jax.errors import UserError
from car_jax.rl import resets
from car_jax.rl.config import PPOConfig
from envs.base import ActionSpace

N_ENVS, N_STEPS, N_CHUNKS, EPISODE = 256, 8, 2, 2


class ShortEpisodes:
    """Wraps a Task so every episode is truncated after EPISODE steps (many resets per chunk)."""

    def __init__(self, task):
        self.task, self.params, self.action = task, task.params, task.action

    def reset(self, key, params):
        return self.task.reset(key, params)

    def step(self, key, state, action, params):
        obs, nxt, reward, terminated, truncated, info = self.task.step(key, state, action, params)
        truncated = truncated | (nxt.step_num >= EPISODE)
        return obs, nxt, reward, terminated, truncated, info


def _layout(state):
    """Categorical layout features of DoorKey states: key cell, door cell, agent cell, heading."""
    tiles = state.grid[..., 0]
    w = tiles.shape[-1]
    flat = tiles.reshape(tiles.shape[:-2] + (-1,))
    key = jnp.argmax(flat == 7, axis=-1)  # Tiles.KEY
    door = jnp.argmax(flat == 8, axis=-1)  # Tiles.DOOR_LOCKED
    agent = state.agent.position[..., 0] * w + state.agent.position[..., 1]
    return jnp.stack([key, door, agent, state.agent.direction.astype(jnp.int32)], axis=-1)


@pytest.fixture(scope="module")
def doorkey_starts():
    """Layouts episodes started from under pool resets, and as many direct `reset` draws."""
    task = envs.make("MiniGrid-DoorKey-5x5")
    env = ShortEpisodes(task)

    def chunk(carry, key):
        obs, state = carry
        k_pool, k_roll = jax.random.split(key)
        pool = resets.draw_reset_pool(env, k_pool, N_ENVS * N_STEPS)

        def step(carry, key):
            obs, state, pool = carry
            k_act, k_step = jax.random.split(key)
            action = jax.random.randint(k_act, (N_ENVS,), 0, task.action.n)
            keys = jax.random.split(k_step, N_ENVS)
            obs, nxt, _, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys, state, action, env.params
            )
            done = term | trunc
            obs, state, pool = resets.take_resets(pool, done, obs, nxt)
            return (obs, state, pool), (done, _layout(state))

        (obs, state, pool), (done, layout) = jax.lax.scan(
            step, (obs, state, pool), jax.random.split(k_roll, N_STEPS)
        )
        return (obs, state), (done, layout, resets.shared_resets(pool))

    @jax.jit
    def run(key):
        k0, k1, k2 = jax.random.split(key, 3)
        start = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k0, N_ENVS), env.params)
        _, (done, layout, shared) = jax.lax.scan(chunk, start, jax.random.split(k1, N_CHUNKS))
        direct = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k2, N_ENVS * N_STEPS * N_CHUNKS // EPISODE), env.params
        )
        return done, layout, shared, _layout(direct[1])

    done, layout, shared, direct = jax.device_get(run(jax.random.key(0)))
    return np.asarray(layout)[np.asarray(done)], np.asarray(direct), np.asarray(shared)


def test_pool_starts_match_reset_distribution(doorkey_starts):
    pooled, direct, shared = doorkey_starts
    assert len(pooled) > 1500  # many episodes did restart from the pool
    np.testing.assert_array_equal(shared, 0)  # the pool was large enough: no shared starts
    for f, name in enumerate(("key cell", "door cell", "agent cell", "heading")):
        cats = np.union1d(pooled[:, f], direct[:, f])
        table = np.stack(
            [[(pooled[:, f] == c).sum() for c in cats], [(direct[:, f] == c).sum() for c in cats]]
        )
        p = chi2_contingency(table).pvalue if len(cats) > 1 else 1.0
        assert p > 1e-3, f"{name}: pool starts differ from reset draws (p={p:.2g})\n{table}"
    # Whole layouts are varied, not a handful repeated.
    assert len({tuple(r) for r in pooled}) > 0.5 * len({tuple(r) for r in direct})


class Counter:
    """Reset draws a random id in [0, 2**30); one-step episodes (every env finishes every step)."""

    params = None
    action = ActionSpace("discrete", n=1)

    def reset(self, key, params):
        x = jax.random.randint(key, (), 0, 2**30)
        return x, ProbeState(t=jnp.zeros((), jnp.int32), x=x.astype(jnp.float32))


@pytest.mark.parametrize("size", [24, 64])
def test_episodes_take_distinct_entries_until_the_pool_wraps(size):
    env = Counter()
    pool = resets.draw_reset_pool(env, jax.random.key(1), size)
    obs, state = jnp.full((8,), -1), ProbeState(t=jnp.zeros(8, jnp.int32), x=jnp.zeros(8))
    done_rows = [np.arange(8) % 2 == 0, np.ones(8, bool), np.ones(8, bool), np.ones(8, bool)]
    taken = []
    for done in done_rows:
        obs, state, pool = resets.take_resets(pool, jnp.asarray(done), obs, state)
        taken += list(np.asarray(obs)[done])
        if not done.all():
            assert np.all(np.asarray(obs)[~done] == -1)  # envs still running keep their state
    assert int(pool.cursor) == 28
    assert int(resets.shared_resets(pool)) == max(0, 28 - size)
    assert len(set(taken)) == min(28, size)  # distinct while entries last, then wrap-around
    assert set(taken) <= set(np.asarray(pool.obs).tolist())


def test_config_refuses_an_unknown_reset_mode():
    with pytest.raises(UserError, match="reset_mode"):
        PPOConfig(reset_mode="sometimes")
    assert PPOConfig(num_envs=64, num_steps=128).pool_size == 512
    assert PPOConfig(num_envs=64, num_steps=8).pool_size == 64


def test_ppo_logs_shared_pool_entries(bandit_run):
    """One-step bandit episodes: 64 end per rollout, the pool holds 16, so 48 share a start."""
    trainer, _, out, _ = bandit_run
    cfg = trainer.config
    assert cfg.reset_mode == "pool" and cfg.pool_size == 16
    np.testing.assert_array_equal(out.metrics["reset_pool_shared"], cfg.batch_size - cfg.pool_size)
