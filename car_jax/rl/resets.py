"""Auto-reset off the hot path: a pool of reset states drawn once per rollout chunk.

The usual vectorised auto-reset (gymnax, PureJaxRL) calls `env.reset` for every env on every step
and keeps the result only where the episode ended: for MiniGrid that layout generation is most of
the env's cost. A `ResetPool` instead draws `size` reset states once per chunk (one batched
`vmap(reset)` outside the step loop); on each step the envs that finished take the next unused
pool entries, in env order (the k-th episode to end in the chunk gets entry k).

Initial-state distribution: pool entries are i.i.d. draws of `reset`, and which entry an env
gets depends only on how many episodes ended before it, never on the entry's content, so every
new episode starts from a fresh draw of the same distribution as `reset`.

Sharing: within one chunk no two episodes share a reset state as long as at most `size` episodes
end in it. Past that the pool wraps around (entry k % size): episodes then share start states
(the same layout, each still a valid draw). `shared_resets(pool)` counts how many did, and PPO
logs it as `reset_pool_shared`; size the pool (`PPOConfig.reset_pool_size`) above the expected
episodes per chunk (num_envs * num_steps / mean episode length) to keep it at 0.

Rejection-sampled resets (BlockedUnlockPickUp redraws bad layouts in a `while_loop`) cost most
here: under vmap a while_loop runs until the slowest env is accepted, once per step with the
per-step reset, once per chunk with the pool.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

RESET_MODES = ("pool", "step")


class ResetPool(flax.struct.PyTreeNode):
    """`size` reset (obs, state) pairs drawn at once, and how many have been handed out."""

    obs: jax.Array  # [size, ...]
    state: Any  # leaves [size, ...]
    cursor: jax.Array  # int32 scalar: entries taken so far in this chunk (may exceed size)

    @property
    def size(self) -> int:
        """Number of entries (static)."""
        return jax.tree.leaves(self.obs)[0].shape[0]


def draw_reset_pool(env: Any, key: jax.Array, size: int) -> ResetPool:
    """`size` independent `env.reset` draws, batched; the cursor starts at 0."""
    # NOTE: size is static (it fixes the pool's shape).
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, size), env.params)
    return ResetPool(obs=obs, state=state, cursor=jnp.zeros((), jnp.int32))


def _where_env(done: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Per-env select: rows of `a` where `done`, else rows of `b` (done: [N], leaves [N, ...])."""
    return jnp.where(done.reshape(done.shape + (1,) * (b.ndim - 1)), a, b)


def take_resets(
    pool: ResetPool, done: jax.Array, obs: jax.Array, state: Any
) -> tuple[jax.Array, Any, ResetPool]:
    """Envs where `done` [N] take the next pool entries (in env order); the others keep theirs."""
    rank = jnp.cumsum(done.astype(jnp.int32)) - 1  # k-th finished env in this step -> k
    index = (pool.cursor + rank) % pool.size
    fresh_obs, fresh_state = jax.tree.map(lambda x: x[index], (pool.obs, pool.state))
    new_state = jax.tree.map(lambda r, s: _where_env(done, r, s), fresh_state, state)
    new_obs = _where_env(done, fresh_obs, obs)
    taken = jnp.sum(done.astype(jnp.int32))
    return new_obs, new_state, pool.replace(cursor=pool.cursor + taken)


def reset_every_step(
    env: Any, key: jax.Array, done: jax.Array, obs: jax.Array, state: Any
) -> tuple[jax.Array, Any]:
    """The per-step auto-reset: a fresh `reset` for every env, kept where `done` [N]."""
    keys = jax.random.split(key, done.shape[0])
    reset_obs, reset_state = jax.vmap(env.reset, in_axes=(0, None))(keys, env.params)
    new_state = jax.tree.map(lambda r, s: _where_env(done, r, s), reset_state, state)
    return _where_env(done, reset_obs, obs), new_state


def shared_resets(pool: ResetPool) -> jax.Array:
    """How many episodes in this chunk started from an entry another episode also used."""
    return jnp.maximum(pool.cursor - pool.size, 0)


def default_pool_size(num_envs: int, num_steps: int) -> int:
    """Pool entries per chunk: one per 16 env steps, at least one per env (Craftax uses 1/16)."""
    return max(num_envs, (num_envs * num_steps) // 16)
