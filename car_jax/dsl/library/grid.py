"""Primitives on symbolic grids: arrays (H, W) of cell codes, or (H, W, C) of per-cell vectors.

A `value` names one kind of cell: a scalar for (H, W) grids, a vector of length C (for example
`(KEY, YELLOW)`) for (H, W, C) grids.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from car_jax.dsl.registry import ArgumentError, primitive


def cell_mask(grid: jax.Array, value: jax.Array) -> jax.Array:
    """bool[H, W]: cells equal to `value` (whole per-cell vector for (H, W, C) grids)."""
    grid, value = jnp.asarray(grid), jnp.asarray(value)
    if grid.ndim < 2:
        raise ArgumentError(f"a grid needs at least 2 axes, got shape {grid.shape}")
    cell_shape = grid.shape[2:]
    if value.shape != cell_shape:
        raise ArgumentError(
            f"this grid's cells have shape {cell_shape}, so value must have that shape, "
            f"got {value.shape}"
        )
    eq = grid == value
    return jnp.all(eq, axis=tuple(range(2, grid.ndim))) if cell_shape else eq


def first_index(mask: jax.Array) -> jax.Array:
    """int32[ndim]: index of the first true element in row-major order; all -1 if none."""
    mask = jnp.asarray(mask) != 0
    if mask.ndim == 0:
        raise ArgumentError("the mask must be an array, got a scalar")
    flat = mask.reshape(-1)
    i = jnp.argmax(flat)  # NOTE: argmax on bool returns the first True (0 if none)
    idx = jnp.stack(jnp.unravel_index(i, mask.shape)).astype(jnp.int32)
    return jnp.where(flat[i], idx, -1)


@primitive("grid", "bool[H, W]")
def mask_of(grid, value):
    """Mask of the cells of grid equal to value."""
    return cell_mask(grid, value)


@primitive("grid", "int")
def count_of(grid, value):
    """Number of cells of grid equal to value."""
    return jnp.sum(cell_mask(grid, value)).astype(jnp.int32)


@primitive("grid", "bool")
def contains(grid, value):
    """True if some cell of grid equals value."""
    return jnp.any(cell_mask(grid, value))


@primitive("grid", "int[2]")
def position_of(grid, value):
    """(row, col) of the first cell equal to value, row-major; (-1, -1) if there is none."""
    return first_index(cell_mask(grid, value))


@primitive("grid", "int[ndim]")
def first_true(mask):
    """Index of the first true element of mask, row-major; all -1 if there is none."""
    return first_index(mask)


@primitive("grid", "cell value")
def cell(grid, pos):
    """The cell of grid at pos = (row, col) (positions outside the grid are clamped)."""
    grid, pos = jnp.asarray(grid), jnp.asarray(pos)
    if grid.ndim < 2 or pos.shape != (2,):
        raise ArgumentError(f"need a grid (H, W, ...) and a (row, col) pair, got shapes "
                            f"{grid.shape} and {pos.shape}")  # fmt: skip
    return grid[pos[0], pos[1]]
