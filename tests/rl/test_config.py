"""PPOConfig: derived values, family defaults, refusals with specific messages."""

import jax
import jax.numpy as jnp
import pytest

from car_jax.errors import UserError
from car_jax.rl.config import PPOConfig


def test_derived_values_follow_fields():
    cfg = PPOConfig(num_envs=16, num_steps=8, total_timesteps=16 * 8 * 5 + 7, num_minibatches=4)
    assert cfg.batch_size == 128
    assert cfg.minibatch_size == 32
    assert cfg.num_updates == 5  # the remainder of 7 steps is dropped
    assert cfg.replace(num_envs=32).batch_size == 256


def test_family_defaults_and_overrides():
    cfg = PPOConfig.for_family("minigrid", num_envs=64, hidden=[32, 32])
    assert cfg.family == "minigrid"
    assert cfg.num_envs == 64
    assert cfg.hidden == (32, 32)
    assert cfg.num_minibatches == 8  # from the family table
    assert PPOConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(num_envs=10, num_steps=3, num_minibatches=4), "must divide the batch"),
        (dict(num_envs=0), "num_envs must be a positive int"),
        (dict(total_timesteps=10), "less than one update"),
        (dict(gamma=1.5), "gamma must lie in [0, 1]"),
        (dict(activation="swish"), "activation must be one of"),
    ],
)
def test_bad_settings_are_refused(kwargs, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]")):
        PPOConfig(**kwargs)


def test_unknown_family_and_field_are_named():
    with pytest.raises(UserError, match="known families: brax, classic, minatar, minigrid"):
        PPOConfig.for_family("atari")
    with pytest.raises(UserError, match="unknown PPOConfig field.*num_env"):
        PPOConfig().replace(num_env=4)


def test_hyper_is_a_vmappable_pytree():
    hypers = jax.vmap(lambda lr: PPOConfig().hyper(lr=lr))(jnp.array([1e-3, 2e-3]))
    assert hypers.lr.shape == (2,)
    assert float(hypers.ent_coef[0]) == pytest.approx(0.01)
    with pytest.raises(UserError, match="unknown PPOHyper field"):
        PPOConfig().hyper(learning_rate=1.0)
