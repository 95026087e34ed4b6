"""GAE and the clipped PPO loss, shared by discrete and continuous policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from car_jax.rl import networks


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array | float,
    gae_lambda: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates over a time-major rollout [T, ...].

    Args:
      rewards, values: r_t and V(s_t).
      next_values: V of the observation that followed step t *before* any auto-reset, so on a
        truncated step it is the value of the final observation (the bootstrap), and on an
        ordinary step it equals values[t + 1].
      terminated: true end of the episode at step t: no bootstrap (next value counts as 0).
      done: terminated or truncated: the advantage recursion stops at t.

    Returns:
      (advantages, value targets), both shaped like `rewards`.
    """
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - done.astype(jnp.float32)
    deltas = rewards + gamma * next_values * not_term - values

    def backward(gae, x):
        delta, cont = x
        gae = delta + gamma * gae_lambda * cont * gae
        return gae, gae

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values


def ppo_loss(
    params: Any,
    apply_fn: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
    action_kind: str,
    batch: Any,
    advantages: jax.Array,
    targets: jax.Array,
    hyper: Any,
    clip_value: bool = True,
    normalize_advantages: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped PPO objective on one minibatch; returns (total loss, named parts).

    `batch` has `.obs`, `.action`, `.log_prob` and `.value` (from the rollout policy); `hyper`
    has `clip_eps`, `vf_coef` and `ent_coef` (floats or traced scalars).
    """
    # NOTE: action_kind, clip_value and normalize_advantages are static Python values.
    pi, value = apply_fn(params, batch.obs)
    logp = networks.log_prob(action_kind, pi, batch.action)

    # Value loss, clipped around the rollout's estimate.
    v_err = jnp.square(value - targets)
    if clip_value:
        v_clipped = batch.value + jnp.clip(value - batch.value, -hyper.clip_eps, hyper.clip_eps)
        v_err = jnp.maximum(v_err, jnp.square(v_clipped - targets))
    value_loss = 0.5 * v_err.mean()

    # Clipped surrogate.
    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_ratio = logp - batch.log_prob
    ratio = jnp.exp(log_ratio)
    surr = ratio * advantages
    surr_clipped = jnp.clip(ratio, 1.0 - hyper.clip_eps, 1.0 + hyper.clip_eps) * advantages
    actor_loss = -jnp.minimum(surr, surr_clipped).mean()

    ent = networks.entropy(action_kind, pi).mean()
    total = actor_loss + hyper.vf_coef * value_loss - hyper.ent_coef * ent
    parts = {
        "total_loss": total,
        "actor_loss": actor_loss,
        "value_loss": value_loss,
        "entropy": ent,
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "clip_frac": (jnp.abs(ratio - 1.0) > hyper.clip_eps).mean(),
    }
    return total, parts
