"""PPOConfig: derived values, family defaults, refusals with specific messages."""

import re

import jax
import jax.numpy as jnp
import pytest

from car_jax.errors import UserError
from car_jax.rl.config import PPOConfig, parse_overrides


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


def test_ppo_flag_values_take_the_field_type():
    got = parse_overrides(["gamma=0.999", "anneal_lr=false", "hidden=256,256", "num-envs=64",
                           "activation=relu", "clip_value=Yes"])  # fmt: skip
    assert got == dict(gamma=0.999, anneal_lr=False, hidden=(256, 256), num_envs=64,
                       activation="relu", clip_value=True)  # fmt: skip
    assert PPOConfig.for_family("minatar", **got).hidden == (256, 256)
    assert parse_overrides(None) == {}


@pytest.mark.parametrize(
    "items, words",
    [
        (["gamma"], "--ppo 'gamma': expected KEY=VALUE"),
        (["gama=0.9"], "PPOConfig has no field 'gama'; settable: activation"),
        (["family=brax"], "no field 'family'"),
        (["anneal_lr=maybe"], "anneal_lr takes true or false, got 'maybe'"),
        (["num_envs=1.5"], "num_envs takes an integer, got '1.5'"),
        (["hidden=wide"], "hidden takes comma-separated integers"),
        (["lr=1e-3", "lr=2e-3"], "--ppo sets lr twice"),
    ],
)
def test_bad_ppo_flags_are_refused_by_name(items, words):
    with pytest.raises(UserError, match=re.escape(words)):
        parse_overrides(items)
