"""The plugin's DSL primitive: `colours_touch`, a vision primitive on RGB frames.

Importing this module registers it with car-jax's primitive registry; from then on it is listed by
`car-jax dsl`, shown to the VLM in the DSL reference, and callable from reward programs, where the
compiler checks its arguments by the declared kinds like those of any built-in primitive.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from car_jax.dsl import primitive


def _near(frame: jax.Array, colour: tuple, tol: int) -> jax.Array:
    # NOTE: uint8 subtraction wraps around; compare in int32.
    diff = jnp.abs(frame.astype(jnp.int32) - jnp.asarray(colour, jnp.int32))
    return jnp.max(diff, axis=-1) <= tol


@primitive(
    "vision",
    "bool",
    kinds={"frame": "image", "colour": "colour", "other": "colour", "tol": "const"},
)
def colours_touch(frame, colour, other, tol=0):
    """True if some pixel of colour is next to (above, below, left or right of) a pixel of other."""
    a = _near(frame, colour, tol)
    b = jnp.pad(_near(frame, other, tol), 1)
    # A pixel touches `other` when one of its 4 neighbours (shifted views of the padded mask) does.
    beside = b[:-2, 1:-1] | b[2:, 1:-1] | b[1:-1, :-2] | b[1:-1, 2:]
    return jnp.any(a & beside)
