"""Sprite-grid program inputs: compile programs to read them lazily, and observe cell ids.

A Task whose frame is a sprite gather declares it (`task.sprite_frames(mode)`, name ->
`envs._draw.SpriteFrame`). Programs compiled with those sheets take such an input either as the
drawn frame or as its cell ids, and answer vision primitives from per-sprite tables when given ids
(car_jax.dsl.lazy), bit for bit the values they compute on the drawn frame. This module joins the
two sides: `task_sprite_frames` for compiling, `observe_cells` for the observation to feed.
"""

from __future__ import annotations

from typing import Any

import jax


def task_sprite_frames(task: Any, mode: str) -> dict[str, Any]:
    """The sprite-grid inputs `task` declares for `mode` (empty when it declares none)."""
    declare = getattr(task, "sprite_frames", None)
    return dict(declare(mode)) if callable(declare) else {}


def observe_cells(task: Any, state: Any, mode: str) -> dict[str, jax.Array]:
    """`task.observe(state, mode)` with every sprite-grid input given as its cell ids.

    Under jit the drawn frames `observe` also computes are unused and compiled away.
    """
    obs = dict(task.observe(state, mode))
    for name, sheet in task_sprite_frames(task, mode).items():
        obs[name] = sheet.cell_ids(state)
    return obs


def reads_cells(compiled: Any, task: Any, mode: str) -> bool:
    """Whether every program of `compiled` (a CompiledSpec) accepts `task`'s cell ids for `mode`."""
    names = set(task_sprite_frames(task, mode))
    programs = getattr(compiled, "programs", ())
    return bool(names) and all(names <= set(p.sprite_frames) for p in programs)
