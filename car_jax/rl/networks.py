"""Actor-critic networks (flax linen) and the two policy distributions, written once for all tasks.

`make_network(config, env)` picks the torso from the observation (integer grid -> per-channel
embedding, image-like float/bool [H, W, C] -> small CNN, anything else -> flattened MLP input) and
the head from the action space (categorical logits or Gaussian mean with a state-independent
log-std). Pass your own `network=` to `make_train` to override; it must be a linen Module whose
`__call__(obs)` takes one batch of observations and returns `(policy_params, value)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from car_jax.errors import UserError

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}


def _kernel_init(scale: float) -> nn.initializers.Initializer:
    # NOTE: not nn.initializers.orthogonal: under vmap over seeds it becomes a batched LAPACK QR,
    # which on jaxlib 0.10 CPU can deadlock the 2-thread pool (both threads wait in
    # ParallelBatchMap). Glorot-uniform scaled by gain**2 gives the same weight magnitudes.
    return nn.initializers.variance_scaling(scale**2, "fan_avg", "uniform")


def _dense(features: int, scale: float) -> nn.Dense:
    return nn.Dense(features, kernel_init=_kernel_init(scale), bias_init=nn.initializers.zeros)


class MLP(nn.Module):
    """Dense layers (gain-scaled Glorot init) with the given activation; last layer linear."""

    hidden: Sequence[int]
    out: int
    activation: str = "tanh"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Map [B, D] to [B, out]."""
        act = _ACTIVATIONS[self.activation]
        for h in self.hidden:
            x = act(_dense(h, np.sqrt(2.0))(x))
        return _dense(self.out, self.out_scale)(x)


class FlattenTorso(nn.Module):
    """Float vector (or any) observation: cast to float32 and flatten."""

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """[B, ...] -> [B, D]."""
        return obs.reshape(obs.shape[0], -1).astype(jnp.float32)


class GridEmbedTorso(nn.Module):
    """Integer grid [B, H, W, C]: embed each channel with its own table, concatenate, flatten.

    `constant_channels`: how many trailing channels hold one value over the whole grid (the
    sub-task progress plane of `CodeReward(progress_obs=True)`). They are embedded once, from
    cell (0, 0), instead of at every cell: the same function class (a dense layer over H * W
    copies of one embedding is a dense layer over one), with H * W - 1 fewer copies feeding the
    first dense layer, which is most of the network's cost; other learning dynamics, so
    `make_network` passes them only with `PPOConfig.embed_constant_once` (off by default).
    """

    embed_dim: int = 16
    vocab: int = 256
    constant_channels: int = 0

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """[B, H, W, C] ints -> [B, (H * W * (C - n) + n) * embed_dim], n = constant_channels."""
        # NOTE: values outside [0, vocab) would be clamped silently by the gather; vocab is
        # checked against the dtype range in `make_network`.
        ids = obs.astype(jnp.int32)
        b, n_cell = obs.shape[0], obs.shape[-1] - self.constant_channels
        tables = [
            nn.Embed(self.vocab, self.embed_dim, name=f"embed_{c}") for c in range(obs.shape[-1])
        ]
        cells = jnp.concatenate([tables[c](ids[..., c]) for c in range(n_cell)], axis=-1)
        parts = [cells.reshape(b, -1)]
        parts += [tables[c](ids[:, 0, 0, c]) for c in range(n_cell, obs.shape[-1])]
        return jnp.concatenate(parts, axis=-1)


class Conv3x3(nn.Module):
    """A 3x3, stride-1, SAME-padded convolution written as one matmul over 3x3 patches.

    The same function and parameters (`kernel` [3, 3, C_in, C_out], `bias` [C_out]) as
    `nn.Conv(features, (3, 3), padding="SAME")`. Why not `nn.Conv`: under `vmap` over seeds (each
    seed its own kernel) XLA's CPU backend turns the convolution into a grouped convolution, which
    runs several times slower than the seeds one after another; a matmul with a batched weight
    stays a plain batched matmul (benchmarks/results/conv_vmap.json).
    """

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, H, W, C_in] float -> [B, H, W, features]."""
        h, w, c = x.shape[-3:]
        kernel = self.param("kernel", self.kernel_init, (3, 3, c, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        # Patch channels in (row offset, column offset, channel) order: the kernel's own layout.
        patches = jnp.concatenate(
            [padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
        )
        return patches @ kernel.reshape(9 * c, self.features) + bias


class CNNTorso(nn.Module):
    """Image-like float/bool [B, H, W, C] (MinAtar): 3x3 convolutions with ReLU, flattened.

    `impl`: "patches" (`Conv3x3`, the default: fast under vmap over seeds on CPU) or "lax"
    (`nn.Conv`). Both have the same parameter tree and compute the same function.
    """

    channels: Sequence[int] = (16,)
    impl: str = "patches"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        """[B, H, W, C] -> [B, H * W * channels[-1]]."""
        x = obs.astype(jnp.float32)
        init = _kernel_init(np.sqrt(2.0))
        for i, c in enumerate(self.channels):
            if self.impl == "lax":
                conv = nn.Conv(c, (3, 3), padding="SAME", kernel_init=init, name=f"Conv_{i}")
            else:
                conv = Conv3x3(c, kernel_init=init, name=f"Conv_{i}")
            x = nn.relu(conv(x))
        return x.reshape(obs.shape[0], -1)


class ActorCritic(nn.Module):
    """Shared torso, separate actor and critic MLPs; returns (policy params, value [B])."""

    torso: nn.Module
    action_kind: str  # "discrete" | "continuous"
    action_size: int  # n actions or action dim
    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[Any, jax.Array]:
        """Batched forward: obs [B, ...] -> (logits [B, n] or (mean, log_std) [B, d], value [B])."""
        x = self.torso(obs)
        out = MLP(self.hidden, self.action_size, self.activation, out_scale=0.01, name="actor")(x)
        value = MLP(self.hidden, 1, self.activation, out_scale=1.0, name="critic")(x)[..., 0]
        if self.action_kind == "discrete":
            return out, value
        log_std = self.param(
            "log_std", nn.initializers.constant(self.init_log_std), (self.action_size,)
        )
        return (out, jnp.broadcast_to(log_std, out.shape)), value


def select_torso(
    config: Any, obs_shape: tuple[int, ...], obs_dtype: str, constant_channels: int = 0
) -> nn.Module:
    """The default torso for an observation shape and dtype (see module docstring).

    `constant_channels`: trailing channels of an integer grid that the env declares constant
    over the grid (`obs_constant_channels`); embedded once when `config.embed_constant_once`.
    """
    dtype = np.dtype(obs_dtype)
    if np.issubdtype(dtype, np.integer) and len(obs_shape) == 3:
        # NOTE: wider int dtypes are allowed; the env promises values < embed_vocab.
        if dtype == np.uint8 and config.embed_vocab < 256:
            raise UserError(
                f"PPOConfig.embed_vocab={config.embed_vocab} is too small for uint8 observations "
                "(needs 256)"
            )
        if not 0 <= constant_channels < obs_shape[-1]:
            raise UserError(
                f"obs_constant_channels={constant_channels} must lie in [0, {obs_shape[-1]}) for "
                f"a grid observation of shape {tuple(obs_shape)} (at least one channel per cell)"
            )
        once = constant_channels if getattr(config, "embed_constant_once", False) else 0
        return GridEmbedTorso(config.embed_dim, config.embed_vocab, once)
    if len(obs_shape) == 3:
        return CNNTorso(tuple(config.cnn_channels), config.conv_impl)
    return FlattenTorso()


def make_network(config: Any, env: Any) -> ActorCritic:
    """The default actor-critic for `env` (torso by observation, head by action kind)."""
    action = env.action
    if action.kind == "discrete":
        if action.n < 1:
            raise UserError(f"discrete action space needs n >= 1, got n={action.n}")
        size = action.n
    elif action.kind == "continuous":
        if action.dim < 1:
            raise UserError(f"continuous action space needs dim >= 1, got dim={action.dim}")
        size = action.dim
    else:
        raise UserError(
            f"action kind must be 'discrete' or 'continuous', got {action.kind!r} for {env!r}"
        )
    constant = int(getattr(env, "obs_constant_channels", 0))
    torso = select_torso(config, tuple(env.obs_shape), env.obs_dtype, constant)
    return ActorCritic(
        torso=torso,
        action_kind=action.kind,
        action_size=size,
        hidden=tuple(config.hidden),
        activation=config.activation,
        init_log_std=config.init_log_std,
    )


# --- distributions (written once; `kind` is static) -------------------------------------------


def sample_action(kind: str, pi: Any, key: jax.Array) -> jax.Array:
    """Sample one action per row of the policy params `pi`."""
    if kind == "discrete":
        return jax.random.categorical(key, pi, axis=-1)
    mean, log_std = pi
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)


def log_prob(kind: str, pi: Any, action: jax.Array) -> jax.Array:
    """Log-probability of `action` under `pi`, one value per row."""
    if kind == "discrete":
        logp = jax.nn.log_softmax(pi, axis=-1)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mean, log_std = pi
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def entropy(kind: str, pi: Any) -> jax.Array:
    """Entropy of `pi`, one value per row."""
    if kind == "discrete":
        logp = jax.nn.log_softmax(pi, axis=-1)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    _, log_std = pi
    return jnp.sum(log_std + 0.5 * (1.0 + jnp.log(2 * jnp.pi)), axis=-1)


def greedy_action(kind: str, pi: Any) -> jax.Array:
    """The mode of `pi` (argmax logits or the Gaussian mean), for evaluation."""
    if kind == "discrete":
        return jnp.argmax(pi, axis=-1)
    return pi[0]
