"""GAE (terminated vs truncated) and the PPO loss, against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from car_jax.rl import networks
from car_jax.rl.config import PPOConfig
from car_jax.rl.losses import compute_gae, ppo_loss


def _gae_reference(r, v, nv, term, done, gamma, lam):
    """Plain-Python GAE, one env."""
    adv = np.zeros_like(r)
    gae = 0.0
    for t in reversed(range(len(r))):
        delta = r[t] + gamma * nv[t] * (1 - term[t]) - v[t]
        gae = delta + gamma * lam * (1 - done[t]) * gae
        adv[t] = gae
    return adv


def test_truncation_bootstraps_and_termination_does_not():
    # Three steps, episode ends at t=1; the next episode starts at t=2.
    r = jnp.array([[1.0], [1.0], [1.0]])
    v = jnp.array([[0.5], [0.5], [0.5]])
    nv = jnp.array([[0.5], [4.0], [0.5]])  # V(final obs at t=1) = 4
    done = jnp.array([[False], [True], [False]])
    gamma, lam = 0.9, 1.0
    adv_trunc, tgt_trunc = compute_gae(r, v, nv, jnp.zeros_like(done), done, gamma, lam)
    adv_term, _ = compute_gae(r, v, nv, done, done, gamma, lam)
    # Truncated at t=1: target = 1 + 0.9 * 4; terminated: target = 1.
    assert float(tgt_trunc[1, 0]) == pytest.approx(1 + 0.9 * 4.0)
    assert float(adv_term[1, 0]) == pytest.approx(1 - 0.5)
    # The recursion does not cross the episode boundary in either case: t=0 sees only t=1.
    assert float(adv_trunc[0, 0]) == pytest.approx(
        1 + 0.9 * 0.5 - 0.5 + 0.9 * float(adv_trunc[1, 0])
    )
    assert float(adv_trunc[2, 0]) == pytest.approx(1 + 0.9 * 0.5 - 0.5)


def test_gae_matches_reference_on_random_rollouts():
    rng = np.random.default_rng(0)
    T, N = 12, 5
    r, v, nv = (rng.normal(size=(T, N)).astype(np.float32) for _ in range(3))
    done = rng.random((T, N)) < 0.25
    term = done & (rng.random((T, N)) < 0.5)
    adv, tgt = compute_gae(*map(jnp.asarray, (r, v, nv, term, done)), 0.97, 0.9)
    for n in range(N):
        ref = _gae_reference(r[:, n], v[:, n], nv[:, n], term[:, n], done[:, n], 0.97, 0.9)
        np.testing.assert_allclose(np.asarray(adv[:, n]), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(tgt), np.asarray(adv) + v, rtol=1e-6)


class _Batch:
    def __init__(self, obs, action, log_prob, value):
        self.obs, self.action, self.log_prob, self.value = obs, action, log_prob, value


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_loss_at_the_rollout_policy(kind):
    """At the rollout policy the ratio is 1: no clipping, zero KL, actor loss = -mean(adv)."""

    def apply_fn(params, obs):
        if kind == "discrete":
            return jnp.tile(params["logits"], (obs.shape[0], 1)), params["v"] * jnp.ones(
                obs.shape[0]
            )
        mean = jnp.tile(params["logits"][:2], (obs.shape[0], 1))
        return (mean, jnp.zeros_like(mean)), params["v"] * jnp.ones(obs.shape[0])

    params = {"logits": jnp.array([0.3, -0.2, 0.1]), "v": jnp.array(0.5)}
    obs = jnp.zeros((6, 1))
    pi, value = apply_fn(params, obs)
    key = jax.random.key(1)
    action = networks.sample_action(kind, pi, key)
    batch = _Batch(obs, action, networks.log_prob(kind, pi, action), value)
    adv = jnp.arange(6.0) - 2.0
    tgt = jnp.full((6,), 1.5)
    hyper = PPOConfig().hyper()
    total, parts = ppo_loss(params, apply_fn, kind, batch, adv, tgt, hyper, True, False)
    assert float(parts["approx_kl"]) == pytest.approx(0.0, abs=1e-6)
    assert float(parts["clip_frac"]) == 0.0
    assert float(parts["actor_loss"]) == pytest.approx(-float(adv.mean()), abs=1e-6)
    assert float(parts["value_loss"]) == pytest.approx(0.5 * 1.0**2)
    expected = parts["actor_loss"] + 0.5 * parts["value_loss"] - 0.01 * parts["entropy"]
    assert float(total) == pytest.approx(float(expected), abs=1e-6)
