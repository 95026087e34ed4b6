"""Vision primitives on RGB frames (uint8 arrays of shape (H, W, 3)) and their masks."""

from __future__ import annotations

import jax
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


MAX_BLOBS = 64  # largest max_blobs a program may ask for (fixed-size outputs)


def _count_arg(name, v, hi):
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
        raise ArgumentError(f"{name} must be an integer constant in [1, {hi}], got {v!r}")
    return v


@primitive("vision", "int[2]", kinds={**_KINDS, "cell_px": "const", "min_pixels": "const"})
def colour_cell(frame, colour, cell_px, tol=0, min_pixels=1):
    """(row, col) in cells of cell_px pixels of the first cell (reading order) with min_pixels of colour; (-1, -1) if none."""
    cell_px = _count_arg("cell_px", cell_px, 4096)
    mask = _mask(frame, colour, tol)
    h, w = mask.shape
    if h % cell_px or w % cell_px:
        raise ArgumentError(f"the frame {h}x{w} is not a whole number of {cell_px}-pixel cells")
    counts = mask.reshape(h // cell_px, cell_px, w // cell_px, cell_px).sum(axis=(1, 3))
    return first_index(counts >= min_pixels)


def blob_labels(mask: jax.Array) -> jax.Array:
    """int32 [H, W]: per true pixel, the row-major index of its blob's first pixel (4-connected); H*W elsewhere."""
    mask = _mask2d(mask)
    h, w = mask.shape
    size = h * w
    index = jnp.arange(size, dtype=jnp.int32).reshape(h, w)
    labels = jnp.where(mask, index, size)

    def spread(state):
        labels, _ = state
        pad = jnp.pad(labels, 1, constant_values=size)
        nbr = jnp.minimum(
            jnp.minimum(pad[:-2, 1:-1], pad[2:, 1:-1]), jnp.minimum(pad[1:-1, :-2], pad[1:-1, 2:])
        )
        new = jnp.where(mask, jnp.minimum(labels, nbr), size)
        # Pointer jumping: adopt the label of the pixel one's label names (same blob, smaller).
        flat = jnp.append(new.reshape(-1), size)
        new = jnp.where(mask, jnp.minimum(new, flat[new]), size)
        return new, jnp.any(new != labels)

    # NOTE: a while_loop: under vmap it runs until every blob of every frame has one label.
    labels, _ = jax.lax.while_loop(lambda s: s[1], spread, (labels, jnp.asarray(True)))
    return labels


def _blob_stats(mask, max_blobs):
    mask = _mask2d(mask)
    max_blobs = _count_arg("max_blobs", max_blobs, MAX_BLOBS)
    h, w = mask.shape
    size = h * w
    labels = blob_labels(mask).reshape(-1)
    flat = mask.reshape(-1)
    roots = flat & (labels == jnp.arange(size, dtype=jnp.int32))
    (first,) = jnp.nonzero(roots, size=max_blobs, fill_value=size)
    rows = jnp.repeat(jnp.arange(h, dtype=jnp.int32), w)
    cols = jnp.tile(jnp.arange(w, dtype=jnp.int32), h)
    one = flat.astype(jnp.int32)

    def per_blob(values):
        sums = jax.ops.segment_sum(values * one, labels, num_segments=size + 1)
        return sums[first]

    return jnp.sum(roots).astype(jnp.int32), per_blob(one), per_blob(rows), per_blob(cols)


@primitive("vision", "int")
def blob_count(mask):
    """Number of blobs (4-connected groups of true pixels) of a 2-D mask."""
    mask = _mask2d(mask)
    labels = blob_labels(mask)
    index = jnp.arange(mask.size, dtype=jnp.int32).reshape(mask.shape)
    return jnp.sum(mask & (labels == index)).astype(jnp.int32)


@primitive("vision", "int[max_blobs]", kinds={"max_blobs": "const"})
def blob_sizes(mask, max_blobs):
    """Pixel counts of the first max_blobs blobs of a 2-D mask, in reading order of their first pixel; 0 past the last blob."""
    return _blob_stats(mask, max_blobs)[1]


@primitive("vision", "float[max_blobs, 2]", kinds={"max_blobs": "const"})
def blob_centroids(mask, max_blobs):
    """(row, col) centres of the first max_blobs blobs of a 2-D mask, in reading order; (-1, -1) past the last blob."""
    _, n, rs, cs = _blob_stats(mask, max_blobs)
    safe = jnp.maximum(n, 1)
    c = jnp.stack([rs.astype(jnp.float32) / safe, cs.astype(jnp.float32) / safe], axis=-1)
    return jnp.where((n > 0)[:, None], c, -1.0)
