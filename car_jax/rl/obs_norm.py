"""Running observation normalisation for PPO (`PPOConfig.normalize_obs`).

Per observation feature, a running mean and variance over every observation the agent has
collected, merged one rollout at a time (Chan et al.'s parallel update, exact for any batch
sizes). The policy sees `clip((obs - mean) / sqrt(var + eps), -clip, clip)`, as Brax's PPO and
PureJaxRL's brax runs do. Brax observations mix metres, radians and rad/s: the fingertip-to-
target vector of reacher spans a few centimetres while joint speeds reach tens of rad/s, and
an MLP on the raw values barely sees the former.

The statistics live in the policy's parameter pytree (`{"net": ..., "obs_norm": ObsNorm}`), so
evaluation, checkpoints and the trained parameters carry them. The loss reads them through
`stop_gradient`: their gradients are exactly 0, so Adam (whose moments then stay 0) leaves them
alone and only `update` moves them.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

EPS = 1e-8
CLIP = 10.0


class ObsNorm(flax.struct.PyTreeNode):
    """Running per-feature statistics of the observations seen so far."""

    mean: jax.Array  # [*obs_shape] float32
    var: jax.Array  # [*obs_shape] float32
    count: jax.Array  # float32 scalar: observations merged


def init(obs: jax.Array) -> ObsNorm:
    """Statistics of a first batch `[B, *obs_shape]` (e.g. the reset observations)."""
    obs = obs.astype(jnp.float32)
    return ObsNorm(obs.mean(0), obs.var(0), jnp.asarray(obs.shape[0], jnp.float32))


def update(stats: ObsNorm, obs: jax.Array) -> ObsNorm:
    """`stats` merged with a batch `[B, *obs_shape]` (any leading batch dims flattened)."""
    obs = obs.reshape((-1, *stats.mean.shape)).astype(jnp.float32)
    n = jnp.asarray(obs.shape[0], jnp.float32)
    mean, var = obs.mean(0), obs.var(0)
    total = stats.count + n
    delta = mean - stats.mean
    new_mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + var * n + delta**2 * stats.count * n / total
    return ObsNorm(new_mean, m2 / total, total)


def normalize(stats: ObsNorm, obs: jax.Array) -> jax.Array:
    """`obs` standardised by `stats` (no gradient to the statistics) and clipped to +-CLIP."""
    stats = jax.lax.stop_gradient(stats)
    z = (obs.astype(jnp.float32) - stats.mean) / jnp.sqrt(stats.var + EPS)
    return jnp.clip(z, -CLIP, CLIP)
