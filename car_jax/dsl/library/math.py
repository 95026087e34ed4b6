"""Math and logic primitives (Python-builtin names where Python has one)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from car_jax.dsl.registry import ArgumentError, primitive


def _num(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.int32) if x.dtype == jnp.bool_ else x


@primitive("math", "array")
def abs_(x):
    """Absolute value, elementwise."""
    return jnp.abs(_num(x))


@primitive("math", "float array")
def sqrt(x):
    """Square root, elementwise (negative inputs give nan)."""
    return jnp.sqrt(jnp.asarray(x, jnp.float32))


@primitive("math", "array")
def sign(x):
    """-1, 0 or 1 by the sign of each element."""
    return jnp.sign(_num(x))


@primitive("math", "float array")
def floor(x):
    """Round down, elementwise."""
    return jnp.floor(jnp.asarray(x, jnp.float32))


@primitive("math", "float array")
def ceil(x):
    """Round up, elementwise."""
    return jnp.ceil(jnp.asarray(x, jnp.float32))


@primitive("math", "float array")
def round_(x):
    """Round to the nearest integer (halves to even), elementwise."""
    return jnp.round(jnp.asarray(x, jnp.float32))


@primitive("math", "number or array", min_args=1)
def min_(*values):
    """min(x): smallest element of x; min(a, b, ...): elementwise minimum."""
    if len(values) == 1:
        return jnp.min(_num(values[0]))
    out = _num(values[0])
    for v in values[1:]:
        out = jnp.minimum(out, _num(v))
    return out


@primitive("math", "number or array", min_args=1)
def max_(*values):
    """max(x): largest element of x; max(a, b, ...): elementwise maximum."""
    if len(values) == 1:
        return jnp.max(_num(values[0]))
    out = _num(values[0])
    for v in values[1:]:
        out = jnp.maximum(out, _num(v))
    return out


@primitive("math", "array")
def clip(x, lo, hi):
    """x limited to [lo, hi], elementwise."""
    return jnp.clip(_num(x), lo, hi)


@primitive("math", "bool array")
def between(x, lo, hi):
    """lo <= x <= hi, elementwise."""
    x = _num(x)
    return jnp.logical_and(x >= lo, x <= hi)


@primitive("math", "number")
def sum_(x):
    """Sum of all elements (booleans count as 1)."""
    return jnp.sum(_num(x))


@primitive("math", "float")
def mean(x):
    """Mean of all elements (booleans count as 1)."""
    return jnp.mean(jnp.asarray(x, jnp.float32))


@primitive("math", "int")
def count(x):
    """Number of non-zero (True) elements."""
    return jnp.count_nonzero(jnp.asarray(x)).astype(jnp.int32)


@primitive("math", "bool")
def any_(x):
    """True if any element is non-zero."""
    return jnp.any(jnp.asarray(x) != 0)


@primitive("math", "bool")
def all_(x):
    """True if every element is non-zero."""
    return jnp.all(jnp.asarray(x) != 0)


@primitive("math", "array")
def where(cond, a, b):
    """Elementwise choice: a where cond is true, else b."""
    return jnp.where(jnp.asarray(cond) != 0, a, b)


@primitive("math", "int array")
def int_(x):
    """Convert to int32, truncating toward zero like Python's int()."""
    return (
        jnp.trunc(jnp.asarray(x, jnp.float32)).astype(jnp.int32)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
        else jnp.asarray(x).astype(jnp.int32)
    )


@primitive("math", "float array")
def float_(x):
    """Convert to float32."""
    return jnp.asarray(x).astype(jnp.float32)


@primitive("math", "bool array")
def bool_(x):
    """True where x is non-zero."""
    return jnp.asarray(x) != 0


@primitive("math", "int (compile-time)")
def len_(x):
    """Length of the first axis of an array (a constant: shapes are fixed)."""
    shape = jnp.shape(x)
    if not shape:
        raise ArgumentError("a scalar has no length")
    return int(shape[0])
