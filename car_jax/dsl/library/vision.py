"""Vision primitives on RGB frames (uint8 arrays of shape (H, W, 3)) and their masks."""

from __future__ import annotations

import jax.numpy as jnp

from car_jax.dsl.library.grid import first_index
from car_jax.dsl.registry import ArgumentError, primitive


def _mask(frame, colour, tol):
    # NOTE: uint8 subtraction wraps around; compare in int32.
    diff = jnp.abs(jnp.asarray(frame).astype(jnp.int32) - jnp.asarray(colour, jnp.int32))
    return jnp.max(diff, axis=-1) <= tol


def _mask2d(mask):
    mask = jnp.asarray(mask) != 0
    if mask.ndim != 2:
        raise ArgumentError(f"the mask must be 2-D (H, W), got shape {mask.shape}")
    return mask


_KINDS = {"frame": "image", "colour": "colour", "tol": "const"}


@primitive("vision", "bool[H, W]", kinds=_KINDS)
def colour_mask(frame, colour, tol=0):
    """Pixels whose every channel is within tol of colour."""
    return _mask(frame, colour, tol)


@primitive("vision", "int", kinds=_KINDS)
def pixel_count(frame, colour, tol=0):
    """Number of pixels within tol of colour."""
    return jnp.sum(_mask(frame, colour, tol)).astype(jnp.int32)


@primitive("vision", "bool", kinds={**_KINDS, "min_pixels": "const"})
def present(frame, colour, tol=0, min_pixels=1):
    """True if at least min_pixels pixels are within tol of colour."""
    return jnp.sum(_mask(frame, colour, tol)) >= min_pixels


@primitive("vision", "float[2]")
def centroid(mask):
    """(row, col) mean position of the true pixels of a 2-D mask; (-1, -1) if it is empty."""
    mask = _mask2d(mask)
    n = jnp.sum(mask)
    rows = jnp.arange(mask.shape[0], dtype=jnp.float32)[:, None]
    cols = jnp.arange(mask.shape[1], dtype=jnp.float32)[None, :]
    safe = jnp.maximum(n, 1)
    c = jnp.stack([jnp.sum(mask * rows) / safe, jnp.sum(mask * cols) / safe])
    return jnp.where(n > 0, c, -1.0)


@primitive("vision", "float[2]", kinds=_KINDS)
def colour_centroid(frame, colour, tol=0):
    """(row, col) centre of the pixels within tol of colour; (-1, -1) if there are none."""
    return centroid(_mask(frame, colour, tol))


@primitive("vision", "int[4]")
def bounding_box(mask):
    """(top, left, bottom, right) of the true pixels of a 2-D mask, inclusive; -1s if empty."""
    mask = _mask2d(mask)
    rows, cols = jnp.any(mask, axis=1), jnp.any(mask, axis=0)
    top, left = first_index(rows)[0], first_index(cols)[0]
    bottom = mask.shape[0] - 1 - first_index(rows[::-1])[0]
    right = mask.shape[1] - 1 - first_index(cols[::-1])[0]
    box = jnp.stack([top, left, bottom, right]).astype(jnp.int32)
    return jnp.where(jnp.any(rows), box, -1)
