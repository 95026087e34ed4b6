"""Small PIL helpers shared by the host-side renderers, and the `SpriteFrame` declaration.

A task whose in-jit frame is a grid of pre-drawn sprites declares it with a `SpriteFrame` (see
`MiniGridTask.sprite_frames`): the sprite table, the grid shape and `cell_ids(state)`. Its frame is
then `SpriteFrame.draw(cell_ids(state))` by definition, and reward programs can answer vision
questions from per-sprite tables and the cell ids without drawing the frame (car_jax.dsl.lazy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)


def canvas(width: int, height: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A white RGB image and a drawing context on it."""
    img = Image.new("RGB", (width, height), BACKGROUND)
    return img, ImageDraw.Draw(img)


def font(size: int = 14) -> ImageFont.ImageFont:
    """PIL's bundled scalable font at `size` pixels (no system fonts needed)."""
    return ImageFont.load_default(size=size)


def caption(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int = 14) -> None:
    """Write `text` at `xy` in dark ink."""
    draw.text(xy, text, fill=INK, font=font(size))


def to_array(img: Image.Image) -> np.ndarray:
    """A PIL image as a uint8 H x W x 3 array."""
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def disc(draw: ImageDraw.ImageDraw, center: tuple[float, float], radius: float, fill) -> None:
    """A filled circle with a dark outline."""
    x, y = center
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=INK)


@dataclass(frozen=True, eq=False)
class SpriteFrame:
    """An RGB frame made of `grid_shape` cells, each one sprite of the table `sprites`.

    Attributes:
      sprites: uint8 [S, px, px, 3], read-only; sprite 0 is what empty cells show.
      grid_shape: (rows, cols) of cells; the frame is (rows * px, cols * px, 3).
      cell_ids: state -> int32 [rows, cols], the sprite index of every cell (jittable).
    """

    sprites: np.ndarray
    grid_shape: tuple[int, int]
    cell_ids: Callable[[Any], jax.Array]

    def __post_init__(self) -> None:
        s = self.sprites
        if s.dtype != np.uint8 or s.ndim != 4 or s.shape[1] != s.shape[2] or s.shape[3] != 3:
            raise ValueError(f"sprites must be uint8 [S, px, px, 3], got {s.dtype} {s.shape}")

    @property
    def px(self) -> int:
        """Pixels per cell side."""
        return int(self.sprites.shape[1])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(H, W, 3) of the drawn frame."""
        rows, cols = self.grid_shape
        return (rows * self.px, cols * self.px, 3)

    def draw(self, ids: jax.Array) -> jax.Array:
        """The frame uint8 [rows * px, cols * px, 3] for cell ids [rows, cols]: a sprite gather."""
        rows, cols = self.grid_shape
        cells = jnp.asarray(self.sprites)[
            ids
        ]  # [rows, cols, px, px, 3]; the table is a jit constant
        return cells.transpose(0, 2, 1, 3, 4).reshape(rows * self.px, cols * self.px, 3)
