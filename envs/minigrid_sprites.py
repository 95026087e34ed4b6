"""Tile sprites for MiniGrid tasks: one design, drawn once in numpy at two sizes.

Every (tile kind, colour, agent direction or none) combination is pre-drawn into a sprite table.
The in-jit frame (`pixels` mode) gathers from the small table (`SMALL_PX` per tile); the image for
the VLM (`render`) is composed in numpy from the big table (`BIG_PX` per tile). The small sprites
are the block means of the big ones, so downsampling the VLM image gives the in-jit frame.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from xminigrid.core.constants import NUM_COLORS, NUM_TILES, Colors, Tiles

BIG_PX = 32  # pixels per tile in the VLM image
SMALL_PX = 8  # pixels per tile in the in-jit `frame`
_SUPERSAMPLE = 2  # anti-aliasing of the big sprites

# RGB of each colour id (the usual MiniGrid palette).
PALETTE: dict[int, tuple[int, int, int]] = {
    Colors.EMPTY: (0, 0, 0),
    Colors.RED: (255, 0, 0),
    Colors.GREEN: (0, 255, 0),
    Colors.BLUE: (0, 0, 255),
    Colors.PURPLE: (112, 39, 195),
    Colors.YELLOW: (255, 255, 0),
    Colors.GREY: (100, 100, 100),
    Colors.BLACK: (0, 0, 0),
    Colors.ORANGE: (255, 140, 0),
    Colors.WHITE: (255, 255, 255),
    Colors.BROWN: (160, 82, 45),
    Colors.PINK: (225, 20, 147),
}
AGENT_RGB = (255, 0, 0)
GRID_LINE_RGB = (100, 100, 100)
N_AGENT_LAYERS = 5  # 0: no agent on the tile, 1 + d: agent facing direction d on top of it

# --- shape tests over pixel-centre coordinates (x right, y down, both in [0, 1]) ---------------


def _rect(x, y, x0, x1, y0, y1):
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def _circle(x, y, cx, cy, r):
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _triangle(x, y, a, b, c):
    def side(p, q):
        return (x - q[0]) * (p[1] - q[1]) - (p[0] - q[0]) * (y - q[1])

    d1, d2, d3 = side(a, b), side(b, c), side(c, a)
    neg = (d1 < 0) | (d2 < 0) | (d3 < 0)
    pos = (d1 > 0) | (d2 > 0) | (d3 > 0)
    return ~(neg & pos)


def _hexagon(x, y, r):
    # flat-topped regular hexagon centred in the tile
    dx, dy = np.abs(x - 0.5), np.abs(y - 0.5)
    return (dy <= r * math.sqrt(3) / 2) & (math.sqrt(3) * dx + dy <= r * math.sqrt(3))


def _floor(img, x, y, rgb=(0, 0, 0)):
    img[:] = rgb
    img[_rect(x, y, 0, 0.04, 0, 1) | _rect(x, y, 0, 1, 0, 0.04)] = GRID_LINE_RGB


def _draw_tile(tile: int, color: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One tile at supersampled resolution, float RGB."""
    c = np.array(PALETTE[color], dtype=np.float64)
    img = np.zeros((*x.shape, 3))
    if tile == Tiles.EMPTY:
        return img
    if tile == Tiles.FLOOR:
        _floor(img, x, y, c / 2)
    elif tile == Tiles.WALL:
        img[:] = c
    elif tile == Tiles.GOAL:
        _floor(img, x, y)
        img[_rect(x, y, 0.04, 1, 0.04, 1)] = c
    elif tile == Tiles.KEY:
        _floor(img, x, y)
        shaft = _rect(x, y, 0.50, 0.63, 0.31, 0.88)
        teeth = _rect(x, y, 0.38, 0.50, 0.59, 0.66) | _rect(x, y, 0.38, 0.50, 0.81, 0.88)
        ring = _circle(x, y, 0.56, 0.28, 0.19) & ~_circle(x, y, 0.56, 0.28, 0.064)
        img[shaft | teeth | ring] = c
    elif tile == Tiles.BALL:
        _floor(img, x, y)
        img[_circle(x, y, 0.5, 0.5, 0.31)] = c
    elif tile == Tiles.SQUARE:
        _floor(img, x, y)
        img[_rect(x, y, 0.25, 0.75, 0.25, 0.75)] = c
    elif tile == Tiles.PYRAMID:
        _floor(img, x, y)
        img[_triangle(x, y, (0.15, 0.8), (0.85, 0.8), (0.5, 0.2))] = c
    elif tile == Tiles.HEX:
        _floor(img, x, y)
        img[_hexagon(x, y, 0.35)] = c
    elif tile == Tiles.STAR:
        _floor(img, x, y)
        up = _triangle(x, y, (0.15, 0.75), (0.85, 0.75), (0.5, 0.15))
        down = _triangle(x, y, (0.15, 0.3), (0.85, 0.3), (0.5, 0.9))
        img[up | down] = c
    elif tile == Tiles.DOOR_LOCKED:
        img[:] = c
        img[_rect(x, y, 0.06, 0.94, 0.06, 0.94)] = 0.45 * c
        img[_rect(x, y, 0.52, 0.75, 0.50, 0.56)] = c  # key slot
    elif tile == Tiles.DOOR_CLOSED:
        img[:] = c
        img[_rect(x, y, 0.04, 0.96, 0.04, 0.96)] = 0
        img[_rect(x, y, 0.08, 0.92, 0.08, 0.92)] = c
        img[_rect(x, y, 0.12, 0.88, 0.12, 0.88)] = 0
        img[_circle(x, y, 0.75, 0.5, 0.08)] = c  # handle
    elif tile == Tiles.DOOR_OPEN:
        _floor(img, x, y)
        img[_rect(x, y, 0.88, 1.0, 0.0, 1.0)] = c
        img[_rect(x, y, 0.92, 0.96, 0.04, 0.96)] = 0
    else:
        raise ValueError(f"no sprite for tile id {tile}")
    return img


def _agent_mask(direction: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Red triangle pointing up (0), right (1), down (2) or left (3)."""
    theta = 0.5 * math.pi * (direction - 1)  # the unrotated triangle points right
    pts = [(0.12, 0.19), (0.87, 0.50), (0.12, 0.81)]
    cos, sin = math.cos(theta), math.sin(theta)
    rot = [
        (0.5 + (px - 0.5) * cos - (py - 0.5) * sin, 0.5 + (px - 0.5) * sin + (py - 0.5) * cos)
        for px, py in pts
    ]
    return _triangle(x, y, *rot)


def _downsample(img: np.ndarray, factor: int) -> np.ndarray:
    """Block mean over factor x factor pixels of the two leading image axes."""
    h, w = img.shape[-3] // factor, img.shape[-2] // factor
    return img.reshape(*img.shape[:-3], h, factor, w, factor, 3).mean(axis=(-4, -2))


@functools.cache
def sprite_tables() -> tuple[np.ndarray, np.ndarray]:
    """(big, small) uint8 tables [N_AGENT_LAYERS, NUM_TILES * NUM_COLORS, px, px, 3]."""
    n = BIG_PX * _SUPERSAMPLE
    centres = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(centres, centres)  # y varies along axis 0 (rows)
    masks = [_agent_mask(d, x, y) for d in range(4)]
    big = np.zeros((N_AGENT_LAYERS, NUM_TILES * NUM_COLORS, BIG_PX, BIG_PX, 3), np.uint8)
    for tile in range(NUM_TILES):
        for color in range(NUM_COLORS):
            base = _draw_tile(tile, color, x, y)
            idx = tile * NUM_COLORS + color
            big[0, idx] = np.rint(_downsample(base, _SUPERSAMPLE))
            for d, mask in enumerate(masks):
                with_agent = base.copy()
                with_agent[mask] = AGENT_RGB
                big[1 + d, idx] = np.rint(_downsample(with_agent, _SUPERSAMPLE))
    small = np.rint(_downsample(big.astype(np.float64), BIG_PX // SMALL_PX)).astype(np.uint8)
    big.setflags(write=False)
    small.setflags(write=False)
    return big, small


def compose_numpy(
    table: np.ndarray, grid: np.ndarray, pos: np.ndarray, direction: int, pocket: np.ndarray
) -> np.ndarray:
    """Draw one state with `table` (host side): the grid, then an inventory row below it."""
    h, w = grid.shape[:2]
    px = table.shape[-2]
    img = np.zeros(((h + 1) * px, w * px, 3), np.uint8)
    for r in range(h):
        for c in range(w):
            layer = 1 + direction if (r, c) == (int(pos[0]), int(pos[1])) else 0
            sprite = table[layer, int(grid[r, c, 0]) * NUM_COLORS + int(grid[r, c, 1])]
            img[r * px : (r + 1) * px, c * px : (c + 1) * px] = sprite
    img[h * px :, :px] = table[0, int(pocket[0]) * NUM_COLORS + int(pocket[1])]
    return img
