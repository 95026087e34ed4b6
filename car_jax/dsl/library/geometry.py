"""Geometry primitives on positions: vectors whose last axis holds the coordinates."""

from __future__ import annotations

import jax.numpy as jnp

from car_jax.dsl.registry import primitive


def _f(x):
    return jnp.asarray(x, jnp.float32)


def _i(x):
    x = jnp.asarray(x)
    return x.astype(jnp.int32) if x.dtype == jnp.bool_ else x


@primitive("geometry", "float")
def euclidean_distance(a, b):
    """Straight-line distance between positions a and b."""
    return jnp.sqrt(jnp.sum((_f(a) - _f(b)) ** 2, axis=-1))


@primitive("geometry", "number")
def manhattan_distance(a, b):
    """Sum of absolute coordinate differences between a and b (grid steps, no diagonals)."""
    return jnp.sum(jnp.abs(_i(a) - _i(b)), axis=-1)


@primitive("geometry", "number")
def chebyshev_distance(a, b):
    """Largest absolute coordinate difference between a and b (king moves)."""
    return jnp.max(jnp.abs(_i(a) - _i(b)), axis=-1)


@primitive("geometry", "float")
def norm(v):
    """Length of vector v (e.g. a velocity)."""
    return jnp.sqrt(jnp.sum(_f(v) ** 2, axis=-1))


@primitive("geometry", "bool", kinds={"diagonal": "const"})
def adjacent(a, b, diagonal=False):
    """True if a and b are neighbouring cells (4-neighbourhood; 8 with diagonal=True)."""
    d = jnp.abs(_i(a) - _i(b))
    if diagonal:
        return jnp.max(d, axis=-1) == 1
    return jnp.sum(d, axis=-1) == 1


@primitive("geometry", "bool", kinds={"radius": "const"})
def near(a, b, radius):
    """True if the straight-line distance between a and b is at most radius."""
    return euclidean_distance(a, b) <= radius


@primitive("geometry", "bool")
def equal(a, b):
    """True if a and b are equal in every element (e.g. the same grid position)."""
    return jnp.all(jnp.asarray(a) == jnp.asarray(b), axis=-1)


@primitive("geometry", "bool")
def inside_box(p, lo, hi):
    """True if lo <= p <= hi in every coordinate (corners included)."""
    p = _i(p)
    return jnp.all(jnp.logical_and(p >= _i(lo), p <= _i(hi)), axis=-1)
