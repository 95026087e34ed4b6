"""Checks shared by the per-family task tests (imported by tests/envs/test_*.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from envs.base import Task


def check_vmapped_api(task: Task, n: int = 4, steps: int = 3) -> None:
    """reset / step / observe jitted under vmap give the promised shapes and dtypes."""
    keys = jax.random.split(jax.random.key(0), n)
    reset = jax.jit(jax.vmap(task.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(task.step, in_axes=(0, 0, 0, None)))
    obs, state = reset(keys, task.params)
    assert obs.shape == (n, *task.obs_shape), (obs.shape, task.obs_shape)
    assert obs.dtype == jnp.dtype(task.obs_dtype)
    for i in range(steps):
        k_act, k_step = jax.random.split(jax.random.key(i + 1))
        actions = task.action.sample(k_act, (n,))
        obs, state, reward, term, trunc, info = step(
            jax.random.split(k_step, n), state, actions, task.params
        )
        assert obs.shape == (n, *task.obs_shape)
        assert reward.shape == (n,) and reward.dtype == jnp.float32
        assert term.shape == (n,) and term.dtype == jnp.bool_
        assert trunc.shape == (n,) and trunc.dtype == jnp.bool_
        assert isinstance(info, dict)
    for mode in task.modes:
        spec = task.inputs(mode)
        out = jax.jit(jax.vmap(lambda s, m=mode: task.observe(s, m)))(state)
        assert sorted(out) == sorted(spec)  # NOTE: jit returns dicts key-sorted
        for name, field in spec.items():
            assert out[name].shape == (n, *field.shape), (name, out[name].shape, field.shape)
            assert out[name].dtype == jnp.dtype(field.dtype), (name, out[name].dtype, field.dtype)
        succ = jax.jit(jax.vmap(task.success))(state)
        assert succ.shape == (n,) and succ.dtype == jnp.bool_


def check_spec_exact(task: Task) -> None:
    """`observe` produces exactly the arrays `inputs(mode)` declares (names, order, shapes, dtypes)."""
    _, state = task.reset(jax.random.key(0), task.params)
    for mode in task.modes:
        spec = task.inputs(mode)
        shapes = jax.eval_shape(lambda s, m=mode: task.observe(s, m), state)
        assert sorted(shapes) == sorted(spec)
        for name, field in spec.items():
            assert shapes[name].shape == field.shape, name
            assert shapes[name].dtype == jnp.dtype(field.dtype), name
            assert field.doc, f"{name} has no doc"
        for name in task.constants(mode):
            assert name.isupper(), name


def check_values_in_range(task: Task, inputs: dict, valid: jax.Array) -> None:
    """Every recorded input lies inside its declared value range."""
    spec = task.inputs("state")
    for name, field in spec.items():
        x = np.asarray(inputs[name])
        if field.low is not None:
            assert (x >= field.low).all(), (name, x.min(), field.low)
        if field.high is not None:
            assert (x <= field.high).all(), (name, x.max(), field.high)


def check_render(task: Task) -> np.ndarray:
    """render() gives a readable uint8 RGB image."""
    img = task.render(task.initial_state(jax.random.key(0)))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] >= 128 and img.shape[1] >= 128
    assert img.std() > 5  # not a blank canvas
    return img
