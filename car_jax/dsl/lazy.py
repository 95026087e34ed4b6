"""Lazy frames: vision primitives answered from per-sprite tables, without drawing the frame.

Many tasks draw their frame by gathering one pre-drawn sprite per grid cell (MiniGrid). Such an
input is declared to the compiler with a `SpriteSheet` (any object with `sprites` uint8
[S, px, px, 3] and `grid_shape` (rows, cols)). A program compiled with it accepts, for that input,
either the drawn frame (H, W, 3) or the cell ids int32 (rows, cols); given ids, `obs.<input>` is a
`LazyFrame`:

- slicing it with constant bounds (`frame[a:b, c:d]`) gives another `LazyFrame` (any bounds: cells
  cut by the window use tables of the part of each sprite inside it);
- `pixel_count`, `present`, `colour_centroid`, `colour_mask` (a `LazyMask`), `centroid`,
  `bounding_box`, `colour_cell` are computed from per-sprite tables (colour counts, row/column
  sums, extents) built once in numpy at trace time, gathered by cell id and summed;
- everything else (indexing a pixel, arithmetic, `where`, other primitives) draws the frame (or
  only the mask) from the ids first: a sprite gather, the same as the task's own frame.

Exactness is the contract: every value equals the value on the drawn frame bit for bit. Counts
and extents are integers; centroid sums are integers below 2**24, hence exact in float32 in both
paths (a frame too large for that falls back to drawing), and the final division is the same op.
"""

from __future__ import annotations

from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from car_jax.dsl.library.grid import first_index

_EXACT_F32 = 1 << 24  # integers up to this are exact in float32


class SpriteSheet(Protocol):
    """What the compiler needs to know about a sprite-grid input (see envs._draw.SpriteFrame)."""

    sprites: np.ndarray  # uint8 [S, px, px, 3]
    grid_shape: tuple[int, int]  # (rows, cols) of cells


class SheetTables:
    """A sprite sheet plus per-(colour, tol) tables, computed once in numpy and cached."""

    def __init__(self, sheet: SpriteSheet):
        sprites = np.asarray(sheet.sprites)
        if sprites.dtype != np.uint8 or sprites.ndim != 4 or sprites.shape[-1] != 3:
            raise ValueError(f"a sprite sheet must be uint8 [S, px, px, 3], got {sprites.shape}")
        self.sprites = sprites
        self.px = int(sprites.shape[1])
        self.grid_shape = tuple(int(d) for d in sheet.grid_shape)
        self.frame_shape = (self.grid_shape[0] * self.px, self.grid_shape[1] * self.px, 3)
        self._masks: dict[tuple, np.ndarray] = {}

    def mask(self, colour: tuple, tol: Any) -> np.ndarray:
        """bool [S, px, px]: pixels of every sprite within tol of colour (as `colour_mask`)."""
        key = (tuple(colour), tol)
        if key not in self._masks:
            diff = np.abs(self.sprites.astype(np.int32) - np.asarray(colour, np.int32))
            self._masks[key] = diff.max(axis=-1) <= tol
        return self._masks[key]

    def draw(self, ids: jax.Array) -> jax.Array:
        """The drawn frame for cell ids (the same gather as the task's frame)."""
        rows, cols = ids.shape
        cells = jnp.asarray(self.sprites)[ids]
        return cells.transpose(0, 2, 1, 3, 4).reshape(rows * self.px, cols * self.px, 3)


class _Window:
    """A constant pixel window [y0, y1) x [x0, x1) of a sprite-grid frame."""

    def __init__(self, y0: int, y1: int, x0: int, x1: int):
        self.y0, self.y1, self.x0, self.x1 = y0, y1, x0, x1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    def bands(self, lo: int, hi: int, px: int) -> list[tuple[int, int, int, int]]:
        """Cell bands along one axis: (first cell, end cell, in-sprite start, in-sprite end)."""
        if hi <= lo:
            return []
        first, last = lo // px, (hi - 1) // px
        if first == last:
            return [(first, first + 1, lo - first * px, hi - first * px)]
        out = [(first, first + 1, lo - first * px, px)]
        if last > first + 1:
            out.append((first + 1, last, 0, px))
        out.append((last, last + 1, 0, hi - last * px))
        return out

    def parts(self, px: int):
        """Blocks of cells that share one in-sprite rectangle: (cells, rows, cols)."""
        for r0, r1, sy0, sy1 in self.bands(self.y0, self.y1, px):
            for c0, c1, sx0, sx1 in self.bands(self.x0, self.x1, px):
                yield (r0, r1, c0, c1), (sy0, sy1), (sx0, sx1)


class LazyFrame:
    """frame[window] of a sprite-grid frame, known by its cell ids (traced) and sheet (static)."""

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, ids: jax.Array, tables: SheetTables, window: _Window | None = None):
        self.ids = ids
        self.tables = tables
        h, w, _ = tables.frame_shape
        self.window = window or _Window(0, h, 0, w)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the window."""
        return (*self.window.shape, 3)

    def draw(self) -> jax.Array:
        """The pixels of the window (drawing only the cells it touches)."""
        w, px = self.window, self.tables.px
        if w.y1 <= w.y0 or w.x1 <= w.x0:
            return jnp.zeros(self.shape, jnp.uint8)
        r0, r1, c0, c1 = w.y0 // px, (w.y1 - 1) // px + 1, w.x0 // px, (w.x1 - 1) // px + 1
        block = self.tables.draw(self.ids[r0:r1, c0:c1])
        return block[w.y0 - r0 * px : w.y1 - r0 * px, w.x0 - c0 * px : w.x1 - c0 * px]

    def sliced(self, index: Any) -> LazyFrame | None:
        """frame[index] for constant slices over rows and columns (step 1); None otherwise."""
        if not isinstance(index, tuple):
            index = (index,)
        if len(index) == 3 and isinstance(index[2], slice) and index[2].indices(3) == (0, 3, 1):
            index = index[:2]  # frame[a:b, c:d, :] is frame[a:b, c:d]: every channel
        if len(index) > 2 or not all(isinstance(i, slice) for i in index):
            return None
        h, w = self.window.shape
        bounds = []
        for sl, n in zip(index + (slice(None),) * (2 - len(index)), (h, w)):
            if not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                       for v in (sl.start, sl.stop, sl.step)):  # fmt: skip
                return None
            start, stop, step = sl.indices(n)
            if step != 1:
                return None
            bounds.append((start, max(stop, start)))
        (a, b), (c, d) = bounds
        y0, x0 = self.window.y0, self.window.x0
        return LazyFrame(self.ids, self.tables, _Window(y0 + a, y0 + b, x0 + c, x0 + d))

    def colour_mask(self, colour: tuple, tol: Any) -> LazyMask:
        """The lazy `colour_mask` of this window."""
        return LazyMask(self.ids, self.tables, self.window, self.tables.mask(colour, tol))


class LazyMask:
    """A bool mask of a lazy frame's window: per-sprite masks [S, px, px] gathered by cell id."""

    dtype = np.dtype(np.bool_)
    ndim = 2

    def __init__(self, ids: jax.Array, tables: SheetTables, window: _Window, masks: np.ndarray):
        self.ids, self.tables, self.window, self.masks = ids, tables, window, masks

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the window."""
        return self.window.shape

    def draw(self) -> jax.Array:
        """The mask as a bool array (a gather of the per-sprite masks; no RGB frame)."""
        w, px = self.window, self.tables.px
        if w.y1 <= w.y0 or w.x1 <= w.x0:
            return jnp.zeros(self.shape, bool)
        r0, r1, c0, c1 = w.y0 // px, (w.y1 - 1) // px + 1, w.x0 // px, (w.x1 - 1) // px + 1
        ids = self.ids[r0:r1, c0:c1]
        cells = jnp.asarray(self.masks)[ids]  # [rows, cols, px, px]
        full = cells.transpose(0, 2, 1, 3).reshape(ids.shape[0] * px, ids.shape[1] * px)
        return full[w.y0 - r0 * px : w.y1 - r0 * px, w.x0 - c0 * px : w.x1 - c0 * px]

    # --- per-cell reductions from tables ------------------------------------------------------
    def _reduce(self, table_fn, combine):
        """Combine, over the window's cell blocks, `table_fn(sub-masks, block offsets)` values."""
        px = self.tables.px
        out = []
        for (r0, r1, c0, c1), (sy0, sy1), (sx0, sx1) in self.window.parts(px):
            sub = self.masks[:, sy0:sy1, sx0:sx1]
            ids = self.ids[r0:r1, c0:c1]
            # window coordinates of in-sprite pixel (i, j) of cell (r, c): r*px + i - y0, ...
            row_off = (jnp.arange(r0, r1, dtype=jnp.int32) * px - self.window.y0)[:, None]
            col_off = (jnp.arange(c0, c1, dtype=jnp.int32) * px - self.window.x0)[None, :]
            out.append(table_fn(sub, sy0, sx0, ids, row_off, col_off))
        return combine(out)

    def count(self) -> jax.Array:
        """int32: number of true pixels (as jnp.sum(mask))."""
        if not self.shape[0] or not self.shape[1]:
            return jnp.zeros((), jnp.int32)

        def part(sub, sy0, sx0, ids, row_off, col_off):
            table = jnp.asarray(sub.sum(axis=(1, 2)).astype(np.int32))
            return jnp.sum(table[ids])

        return self._reduce(part, lambda xs: sum(xs[1:], xs[0]).astype(jnp.int32))

    def sums(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """int32 (count, sum of row indices, sum of column indices) of the true pixels."""

        def part(sub, sy0, sx0, ids, row_off, col_off):
            n = sub.sum(axis=(1, 2)).astype(np.int64)
            rows = np.arange(sy0, sy0 + sub.shape[1])[None, :, None]
            cols = np.arange(sx0, sx0 + sub.shape[2])[None, None, :]
            rs, cs = (sub * rows).sum(axis=(1, 2)), (sub * cols).sum(axis=(1, 2))
            n_t, rs_t, cs_t = (jnp.asarray(t.astype(np.int32)) for t in (n, rs, cs))
            cnt = n_t[ids]
            return (
                jnp.sum(cnt),
                jnp.sum(rs_t[ids] + cnt * row_off),
                jnp.sum(cs_t[ids] + cnt * col_off),
            )

        def combine(xs):
            return tuple(sum((x[i] for x in xs[1:]), xs[0][i]) for i in range(3))

        return self._reduce(part, combine)

    def extent(self) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """int32 (top, left, bottom, right) of the true pixels; meaningless when empty."""
        big = np.int32(1 << 30)

        def part(sub, sy0, sx0, ids, row_off, col_off):
            any_r, any_c = sub.any(axis=2), sub.any(axis=1)  # [S, rows], [S, cols]
            ri = np.arange(sy0, sy0 + sub.shape[1])
            ci = np.arange(sx0, sx0 + sub.shape[2])
            top = np.where(any_r, ri, big).min(axis=1)
            bottom = np.where(any_r, ri, -big).max(axis=1)
            left = np.where(any_c, ci, big).min(axis=1)
            right = np.where(any_c, ci, -big).max(axis=1)
            t = [jnp.asarray(x.astype(np.int32))[ids] for x in (top, left, bottom, right)]
            return (
                jnp.min(t[0] + row_off),
                jnp.min(t[1] + col_off),
                jnp.max(t[2] + row_off),
                jnp.max(t[3] + col_off),
            )

        def combine(xs):
            ops = (jnp.minimum, jnp.minimum, jnp.maximum, jnp.maximum)
            out = list(xs[0])
            for x in xs[1:]:
                out = [op(a, b) for op, a, b in zip(ops, out, x)]
            return tuple(out)

        return self._reduce(part, combine)

    def cell_counts(self, cell_px: int) -> jax.Array | None:
        """int32 [rows, cols]: true pixels per cell, when the window is whole cells of `cell_px`."""
        w, px = self.window, self.tables.px
        if cell_px != px or any(v % px for v in (w.y0, w.y1, w.x0, w.x1)):
            return None
        ids = self.ids[w.y0 // px : w.y1 // px, w.x0 // px : w.x1 // px]
        return jnp.asarray(self.masks.sum(axis=(1, 2)).astype(np.int32))[ids]


def is_lazy(v: Any) -> bool:
    """True for a lazy frame or mask."""
    return isinstance(v, LazyFrame | LazyMask)


def materialize(v: Any) -> Any:
    """Draw a lazy value (frame or mask); anything else unchanged."""
    return v.draw() if is_lazy(v) else v


def centroid_fits(shape: tuple[int, ...]) -> bool:
    """Whether index sums over a window of `shape` stay exact in float32 (else draw instead)."""
    h, w = shape[0], shape[1]
    return h * w * max(h, w, 1) < _EXACT_F32


# --- lazy versions of the vision primitives (None: not answerable lazily, draw instead) --------
def _as_mask(frame: Any, colour: tuple, tol: Any) -> LazyMask | None:
    return frame.colour_mask(colour, tol) if isinstance(frame, LazyFrame) else None


def _lazy_colour_mask(frame, colour, tol=0):
    return _as_mask(frame, colour, tol)


def _lazy_pixel_count(frame, colour, tol=0):
    m = _as_mask(frame, colour, tol)
    return None if m is None else m.count()


def _lazy_present(frame, colour, tol=0, min_pixels=1):
    m = _as_mask(frame, colour, tol)
    return None if m is None else m.count() >= min_pixels


def _lazy_centroid(mask):
    if not isinstance(mask, LazyMask) or not centroid_fits(mask.shape):
        return None
    n, rs, cs = mask.sums()
    safe = jnp.maximum(n, 1)
    # NOTE: the integer sums are < 2**24, so float32 holds them exactly, as the drawn path's
    # float32 sums do; the division is the same float32 / int32 op.
    c = jnp.stack([rs.astype(jnp.float32) / safe, cs.astype(jnp.float32) / safe])
    return jnp.where(n > 0, c, -1.0)


def _lazy_colour_centroid(frame, colour, tol=0):
    m = _as_mask(frame, colour, tol)
    return None if m is None else _lazy_centroid(m)


def _lazy_bounding_box(mask):
    if not isinstance(mask, LazyMask):
        return None
    if not mask.shape[0] or not mask.shape[1]:
        return jnp.full((4,), -1, jnp.int32)
    box = jnp.stack(mask.extent()).astype(jnp.int32)
    return jnp.where(mask.count() > 0, box, -1)


def _lazy_colour_cell(frame, colour, cell_px, tol=0, min_pixels=1):
    m = _as_mask(frame, colour, tol)
    counts = None if m is None else m.cell_counts(cell_px)
    if counts is None:
        return None
    return first_index(counts >= min_pixels)


LAZY_PRIMITIVES = {
    "colour_mask": _lazy_colour_mask,
    "pixel_count": _lazy_pixel_count,
    "present": _lazy_present,
    "centroid": _lazy_centroid,
    "colour_centroid": _lazy_colour_centroid,
    "bounding_box": _lazy_bounding_box,
    "colour_cell": _lazy_colour_cell,
}
