"""The shipped primitives; importing this package registers them all (see `registry.primitive`)."""

from car_jax.dsl.library import geometry, grid, math, vision

__all__ = ["geometry", "grid", "math", "vision"]
