"""PPO hyperparameters: one frozen dataclass, derived values as properties, defaults per task family."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from car_jax.errors import UserError
from car_jax.rl.resets import default_pool_size


class PPOHyper(flax.struct.PyTreeNode):
    """The float hyperparameters as traced scalars, so `vmap(train)` can sweep them (see `PPOConfig.hyper`)."""

    lr: jax.Array
    clip_eps: jax.Array
    ent_coef: jax.Array
    vf_coef: jax.Array
    gamma: jax.Array
    gae_lambda: jax.Array
    max_grad_norm: jax.Array


# Overrides of the generic defaults, per task family (see `PPOConfig.for_family`).
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    # Egocentric uint8 view, sparse reward: many envs, short rollouts (purejaxrl-style PPO).
    "minigrid": dict(
        num_envs=1024,
        num_steps=64,
        total_timesteps=2_000_000,
        update_epochs=4,
        num_minibatches=8,
        lr=5e-4,
        ent_coef=0.01,
        hidden=(64, 64),
        activation="tanh",
        # 4 dims per channel (8 per cell) cover ~11 tile kinds and 6 colours; the first dense
        # layer dominates the cost, and 16 dims run at half the env steps/s on a 2-core CPU.
        embed_dim=4,
    ),
    # Gymnax classic control (CartPole, MountainCar, ...): PureJaxRL's CartPole PPO (4 envs x 128
    # steps, 4 epochs x 4 minibatches, lr 2.5e-4 annealed, 5e5 steps: ~976 updates); CartPole-v1
    # reaches return 500 with it. MountainCar takes gymnax-blines' settings instead
    # (experiment.RUN_DEFAULTS).
    "classic": dict(
        num_envs=4,
        num_steps=128,
        total_timesteps=500_000,
        update_epochs=4,
        num_minibatches=4,
        lr=2.5e-4,
        ent_coef=0.01,
        gamma=0.99,
        gae_lambda=0.95,
        clip_eps=0.2,
        anneal_lr=True,
    ),
    # MinAtar: small CNN over bool [10, 10, C] frames.
    "minatar": dict(
        num_envs=128,
        num_steps=128,
        total_timesteps=5_000_000,
        update_epochs=4,
        num_minibatches=8,
        lr=5e-4,
        ent_coef=0.01,
        activation="relu",
    ),
    # Brax locomotion: continuous actions, longer horizons, more epochs.
    "brax": dict(
        num_envs=512,
        num_steps=64,
        total_timesteps=10_000_000,
        update_epochs=4,
        num_minibatches=32,
        lr=3e-4,
        ent_coef=0.0,
        gamma=0.99,
        gae_lambda=0.95,
        hidden=(256, 256),
        activation="tanh",
        # Brax's PPO and PureJaxRL's brax runs standardise observations; on reacher the code
        # reward's greedy success went from 12% to 31% IQM at 2M steps with it (2 seeds,
        # benchmarks/results/reacher_spec_probes.json).
        normalize_obs=True,
    ),
}


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters with documented defaults.

    Counts, sizes and switches are static (they fix shapes and code paths). The float
    hyperparameters also come as a traced `PPOHyper` (`config.hyper()`), which `train(key, hyper)`
    accepts, so one compiled program can vmap over learning rates or entropy weights.
    """

    # --- batch shape (static: they fix array shapes) ---
    num_envs: int = 256
    """Parallel environments per seed; must be divisible by the device count (the env batch is sharded)."""
    num_steps: int = 128
    """Rollout length: env steps per env between two updates."""
    total_timesteps: int = 1_000_000
    """Env steps per seed over the whole run (rounded down to whole updates)."""
    update_epochs: int = 4
    """Passes over each rollout batch."""
    num_minibatches: int = 4
    """Minibatches per epoch; must divide num_envs * num_steps."""
    # --- returns ---
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    bootstrap_truncation: bool = True
    """On truncation (time limit) bootstrap from the value of the final observation; never on termination."""
    # --- auto-reset (see car_jax.rl.resets) ---
    reset_mode: str = "pool"
    """"pool": finished envs take states from a reset pool drawn once per rollout; "step": reset every env every step."""
    reset_pool_size: int = 0
    """Reset states per rollout (pool mode); 0 = max(num_envs, num_envs * num_steps // 16)."""
    # --- loss ---
    clip_eps: float = 0.2
    """PPO ratio clip (also the value clip when `clip_value`)."""
    clip_value: bool = True
    """Clip the value update around the rollout's value estimate."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch."""
    # --- optimiser ---
    lr: float = 2.5e-4
    """Adam learning rate (the starting value when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over `num_updates`."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    adam_eps: float = 1e-5
    """Adam epsilon."""
    # --- network ---
    hidden: tuple[int, ...] = (64, 64)
    """Hidden sizes of the actor and critic MLPs (separate heads, same sizes)."""
    activation: str = "tanh"
    """Hidden activation: tanh | relu | gelu."""
    embed_dim: int = 16
    """Embedding size per channel for integer grid observations."""
    embed_vocab: int = 256
    """Embedding table size for integer observations (values must lie in [0, embed_vocab))."""
    embed_constant_once: bool = False
    """Embed the grid channels an env declares constant over the grid (`obs_constant_channels`:
    the code reward's progress plane) once instead of at every cell: the same function class and
    1.25x the env steps/s of DoorKey-16x16 code-reward updates on a 2-core CPU
    (benchmarks/results/ppo_throughput_progress.json), but other learning dynamics: on
    BlockedUnlockPickUp 3 of 5 seeds sustained >= 90% at 4M steps and 4 of 5 at 8M, against 5 of 5
    with the per-cell embedding (ablation_embed_once.json). So it is opt-in (`--ppo
    embed_constant_once=true`); the default embeds the plane at every cell, as every committed
    MiniGrid result does."""
    cnn_channels: tuple[int, ...] = (16,)
    """Conv layers (3x3, stride 1) of the CNN torso for image-like float/bool observations."""
    conv_impl: str = "patches"
    """How the CNN torso convolves: "patches" (one matmul over 3x3 patches; in PPO on a 2-core
    CPU 4x faster than "lax" at one seed, 9x at five vmapped seeds, benchmarks/results/
    conv_vmap.json) or "lax" (`nn.Conv`). Same parameters, same function."""
    normalize_obs: bool = False
    """Standardise float observations by running per-feature mean and variance (clipped to
    +-10; car_jax.rl.obs_norm); the statistics travel with the policy params."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    # --- evaluation ---
    eval_every: int = 0
    """Updates between evaluations on fresh episodes; 0 picks about 10 per run. The last update
    is always evaluated."""
    eval_episodes: int = 32
    """Evaluation episodes per policy (greedy and stochastic each); 0 turns evaluation off."""
    # --- bookkeeping ---
    family: str = field(default="", compare=True)
    """Task family these defaults came from (informational)."""

    def __post_init__(self):
        """Refuse settings that cannot work, saying which field and why."""
        positive = ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise UserError(f"PPOConfig.{name} must be a positive int, got {value!r}")
        if self.batch_size % self.num_minibatches:
            raise UserError(
                f"PPOConfig.num_minibatches={self.num_minibatches} must divide the batch "
                f"num_envs * num_steps = {self.batch_size}"
            )
        if self.num_updates < 1:
            raise UserError(
                f"PPOConfig.total_timesteps={self.total_timesteps} is less than one update "
                f"(num_envs * num_steps = {self.batch_size} env steps)"
            )
        for name in ("eval_every", "eval_episodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise UserError(f"PPOConfig.{name} must be an int >= 0, got {value!r}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"PPOConfig.{name} must lie in [0, 1], got {value!r}")
        if self.reset_mode not in ("pool", "step"):
            raise UserError(
                f"PPOConfig.reset_mode must be 'pool' or 'step', got {self.reset_mode!r}"
            )
        if not isinstance(self.reset_pool_size, int) or self.reset_pool_size < 0:
            raise UserError(
                f"PPOConfig.reset_pool_size must be an int >= 0 (0: automatic), got "
                f"{self.reset_pool_size!r}"
            )
        if self.lr <= 0:
            raise UserError(f"PPOConfig.lr must be > 0, got {self.lr!r}")
        if self.activation not in ("tanh", "relu", "gelu"):
            raise UserError(
                f"PPOConfig.activation must be one of tanh, relu, gelu; got {self.activation!r}"
            )
        if self.conv_impl not in ("patches", "lax"):
            raise UserError(
                f"PPOConfig.conv_impl must be 'patches' or 'lax', got {self.conv_impl!r}"
            )
        if not self.hidden or any(int(h) <= 0 for h in self.hidden):
            raise UserError(f"PPOConfig.hidden must be positive layer sizes, got {self.hidden!r}")

    # --- derived values -----------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Transitions per update: num_envs * num_steps."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per minibatch."""
        return self.batch_size // self.num_minibatches

    @property
    def pool_size(self) -> int:
        """Reset-pool entries per rollout: `reset_pool_size`, or one per 16 env steps (>= num_envs)."""
        return self.reset_pool_size or default_pool_size(self.num_envs, self.num_steps)

    @property
    def num_updates(self) -> int:
        """Updates per seed: total_timesteps // batch_size."""
        return self.total_timesteps // self.batch_size

    @property
    def eval_interval(self) -> int:
        """Updates between evaluations: `eval_every`, or num_updates // 10 (at least 1) when 0."""
        return self.eval_every or max(1, self.num_updates // 10)

    def eval_due(self, done: Any) -> Any:
        """Whether the policy is evaluated after update number `done` (1-based; an int or a
        traced int array): every `eval_interval` updates, and after the last one."""
        return (done % self.eval_interval == 0) | (done == self.num_updates)

    def next_eval(self, done: int) -> int:
        """The first update after `done` updates at which an evaluation is due (host ints)."""
        nxt = (done // self.eval_interval + 1) * self.eval_interval
        return min(nxt, self.num_updates)

    @property
    def env_steps_per_update(self) -> int:
        """Env steps per update and seed (= batch_size)."""
        return self.batch_size

    def hyper(self, **overrides: float) -> PPOHyper:
        """The float hyperparameters as a traced pytree (float32 scalars), with optional overrides."""
        values = {
            name: overrides.pop(name, getattr(self, name)) for name in PPOHyper.__dataclass_fields__
        }
        if overrides:
            raise UserError(
                f"unknown PPOHyper field(s) {', '.join(sorted(overrides))}; "
                f"known: {', '.join(PPOHyper.__dataclass_fields__)}"
            )
        return PPOHyper(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def for_family(cls, family: str, **overrides: Any) -> PPOConfig:
        """Defaults for a task family ("minigrid", "classic", "minatar", "brax"), then `overrides`."""
        if family not in FAMILY_DEFAULTS:
            raise UserError(
                f"no PPO defaults for task family {family!r}; known families: "
                f"{', '.join(sorted(FAMILY_DEFAULTS))}"
            )
        return cls(**{**FAMILY_DEFAULTS[family], "family": family}).replace(**overrides)

    def replace(self, **overrides: Any) -> PPOConfig:
        """A copy with some fields changed; unknown field names are refused."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise UserError(
                f"unknown PPOConfig field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        if "hidden" in overrides:
            overrides["hidden"] = tuple(int(h) for h in overrides["hidden"])
        if "cnn_channels" in overrides:
            overrides["cnn_channels"] = tuple(int(h) for h in overrides["cnn_channels"])
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the fields (derived values included under their names)."""
        out = dataclasses.asdict(self)
        out.update(
            batch_size=self.batch_size,
            minibatch_size=self.minibatch_size,
            num_updates=self.num_updates,
            eval_interval=self.eval_interval,
        )
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PPOConfig:
        """Inverse of `to_dict` (derived values are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        for k in ("hidden", "cnn_channels"):
            if k in kwargs:
                kwargs[k] = tuple(kwargs[k])
        return cls(**kwargs)


# Fields `--ppo KEY=VALUE` may not set: the family is bookkeeping, not a setting.
_NOT_SETTABLE = ("family",)
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_overrides(items: list[str] | None, flag: str = "--ppo") -> dict[str, Any]:
    """PPOConfig overrides from "KEY=VALUE" strings (the `--ppo` flag), each value parsed by the
    field's type: int, float, bool (true/false, yes/no, on/off, 1/0), str, or a comma-separated
    tuple of ints (`hidden=256,256`). Unknown fields, bad values and a field given twice are
    refused, naming the item."""
    types = {f.name: f.type for f in dataclasses.fields(PPOConfig) if f.name not in _NOT_SETTABLE}
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key, text = key.strip().replace("-", "_"), text.strip()
        if not sep or not key or not text:
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {flag} gamma=0.999")
        if key not in types:
            raise UserError(
                f"{flag} {item!r}: PPOConfig has no field {key!r}; settable: "
                f"{', '.join(sorted(types))}"
            )
        if key in out:
            raise UserError(f"{flag} sets {key} twice; give it once")
        kind = str(types[key])
        try:
            if kind == "bool":
                if text.lower() not in _TRUE + _FALSE:
                    raise ValueError
                value: Any = text.lower() in _TRUE
            elif kind == "int":
                value = int(text)
            elif kind == "float":
                value = float(text)
            elif kind.startswith("tuple"):
                value = tuple(int(v) for v in text.split(","))
            else:
                value = text
        except ValueError:
            expected = {"bool": "true or false", "int": "an integer", "float": "a number"}.get(
                kind, "comma-separated integers, e.g. 256,256"
            )
            raise UserError(f"{flag} {item!r}: {key} takes {expected}, got {text!r}") from None
        out[key] = value
    return out
