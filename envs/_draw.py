"""Small PIL helpers shared by the host-side renderers of the non-grid tasks."""

from __future__ import annotations

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
