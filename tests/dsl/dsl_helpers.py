"""Shared input spec, constants and random observations for the DSL tests."""

from __future__ import annotations

import numpy as np

H = W = 6
INPUTS = {
    "pos": ((2,), "int32", "agent (row, col)"),
    "dir": ((), "int32", "agent direction 0..3"),
    "grid": ((H, W), "int32", "tile kind per cell"),
    "cells": ((H, W, 2), "uint8", "(tile kind, colour) per cell"),
    "carrying": ((), "int32", "tile kind carried, 0 if none"),
    "vel": ((2,), "float32", "velocity"),
    "frame": ((8, 8, 3), "uint8", "RGB image"),
}
CONSTANTS = {
    "KEY": 5,
    "DOOR": 4,
    "GOAL": 8,
    "YELLOW": 2,
    "GOAL_POS": (4, 4),
    "YELLOW_RGB": (255, 255, 0),
    "RED_RGB": (255, 0, 0),
}


def random_obs(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """n random observations matching INPUTS, biased so that sub-tasks hold sometimes."""
    grid = rng.choice(np.array([0, 1, 4, 5, 8]), size=(n, H, W), p=[0.6, 0.2, 0.08, 0.07, 0.05])
    colours = rng.integers(0, 4, size=(n, H, W))
    frame = np.zeros((n, 8, 8, 3), np.uint8)
    palette = np.array([[0, 0, 0], [255, 255, 0], [250, 250, 8], [255, 0, 0], [40, 40, 40]])
    frame[:] = palette[rng.integers(0, 5, size=(n, 8, 8), endpoint=False)]
    return {
        "pos": rng.integers(0, H, size=(n, 2)).astype(np.int32),
        "dir": rng.integers(0, 4, size=(n,)).astype(np.int32),
        "grid": grid.astype(np.int32),
        "cells": np.stack([grid, colours], -1).astype(np.uint8),
        "carrying": rng.choice(np.array([0, 5, 7]), size=(n,)).astype(np.int32),
        "vel": rng.normal(size=(n, 2)).astype(np.float32),
        "frame": frame,
    }
