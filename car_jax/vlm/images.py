"""The two images the model sees: the task's initial state and the goal state its expert reaches."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from car_jax.errors import UserError


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 H x W x 3 array as PNG bytes."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise UserError(
            f"task render must be a uint8 H x W x 3 image, got {arr.dtype} {tuple(arr.shape)}"
        )
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def task_images(task: Any, seed: int = 0) -> tuple[bytes, bytes]:
    """PNGs of the task's initial state and of the goal state reached by its expert."""
    import jax

    key = jax.random.key(seed)
    initial = png_bytes(task.render(task.initial_state(key)))
    try:
        goal_state = task.goal_state(key)
    except Exception as err:
        raise UserError(f"cannot make a goal image for {task.id!r}: {err}") from None
    return initial, png_bytes(task.render(goal_state))
