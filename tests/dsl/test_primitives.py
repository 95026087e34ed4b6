"""The shipped primitives against numpy, through compiled programs; the registry and reference."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from dsl_helpers import CONSTANTS, INPUTS
from scipy import ndimage

from car_jax.dsl import REGISTRY, compile_program, primitive, reference_markdown
from car_jax.dsl.registry import CATEGORIES


def run_batch(expr: str, batch: dict) -> np.ndarray:
    """Compile `return <expr>` once, vmap it over the batch."""
    prog = compile_program(f"def f(obs):\n    return {expr}\n", INPUTS, CONSTANTS)
    return np.asarray(jax.jit(jax.vmap(prog.fn))(batch))


def rows(batch):
    n = len(batch["pos"])
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


def np_mask(frame, rgb, tol):
    return np.max(np.abs(frame.astype(int) - np.array(rgb)), -1) <= tol


def np_blobs(mask, k):
    """Blob sizes and centroids (4-connected, ordered by first pixel), padded to k."""
    labels, n = ndimage.label(mask)  # raster-scan labelling: blob i has the i-th first pixel
    sizes = np.zeros(k, int)
    cents = np.full((k, 2), -1.0)
    for i in range(min(n, k)):
        px = np.argwhere(labels == i + 1)
        sizes[i], cents[i] = len(px), px.mean(0)
    return n, sizes, cents


def np_cell(mask, px, min_pixels):
    h, w = mask.shape
    counts = mask.reshape(h // px, px, w // px, px).sum((1, 3))
    return np_first(counts >= min_pixels)


def np_first(mask):
    idx = np.argwhere(mask)
    return idx[0] if len(idx) else np.array([-1, -1])


CASES = {
    # expression: numpy reference on one observation
    "euclidean_distance(obs.pos, GOAL_POS)": lambda o: np.hypot(*(o["pos"] - (4, 4))),
    "manhattan_distance(obs.pos, GOAL_POS)": lambda o: np.abs(o["pos"] - (4, 4)).sum(),
    "chebyshev_distance(obs.pos, GOAL_POS)": lambda o: np.abs(o["pos"] - (4, 4)).max(),
    "adjacent(obs.pos, GOAL_POS)": lambda o: np.abs(o["pos"] - (4, 4)).sum() == 1,
    "adjacent(obs.pos, GOAL_POS, diagonal=True)": lambda o: np.abs(o["pos"] - (4, 4)).max() == 1,
    "inside_box(obs.pos, (1, 2), (3, 4))": lambda o: (
        (1 <= o["pos"][0] <= 3) and (2 <= o["pos"][1] <= 4)
    ),
    "near(obs.vel, (0.0, 0.0), 1)": lambda o: np.hypot(*o["vel"]) <= 1,
    "count_of(obs.grid, KEY)": lambda o: (o["grid"] == 5).sum(),
    "count_of(obs.cells, (KEY, YELLOW))": lambda o: np.all(o["cells"] == (5, 2), -1).sum(),
    "position_of(obs.grid, KEY)[0] * 10 + position_of(obs.grid, KEY)[1]": lambda o: (
        np_first(o["grid"] == 5) @ (10, 1)
    ),
    "first_true(obs.grid == 8)[1]": lambda o: np_first(o["grid"] == 8)[1],
    "cell(obs.grid, obs.pos)": lambda o: o["grid"][o["pos"][0], o["pos"][1]],
    "sum(mask_of(obs.grid, 1))": lambda o: (o["grid"] == 1).sum(),
    "pixel_count(obs.frame, YELLOW_RGB, 10)": lambda o: np_mask(
        o["frame"], (255, 255, 0), 10
    ).sum(),
    "pixel_count(obs.frame, 'yellow')": lambda o: np_mask(o["frame"], (255, 255, 0), 0).sum(),
    "present(obs.frame, RED_RGB, 0, 5)": lambda o: np_mask(o["frame"], (255, 0, 0), 0).sum() >= 5,
    "centroid(colour_mask(obs.frame, 'red'))[1]": lambda o: (
        np.argwhere(np_mask(o["frame"], (255, 0, 0), 0))[:, 1].mean()
        if np_mask(o["frame"], (255, 0, 0), 0).any()
        else -1
    ),
    "colour_centroid(obs.frame, YELLOW_RGB, 10)[0]": lambda o: np.argwhere(
        np_mask(o["frame"], (255, 255, 0), 10)
    )[:, 0].mean(),
    "sum(bounding_box(colour_mask(obs.frame, RED_RGB)) * (1000, 100, 10, 1))": lambda o: (
        np.array(
            [
                *np.argwhere(np_mask(o["frame"], (255, 0, 0), 0)).min(0),
                *np.argwhere(np_mask(o["frame"], (255, 0, 0), 0)).max(0),
            ]
        )
        @ (1000, 100, 10, 1)
    ),
    "blob_count(colour_mask(obs.frame, RED_RGB))": lambda o: np_blobs(
        np_mask(o["frame"], (255, 0, 0), 0), 1
    )[0],
    "sum(blob_sizes(colour_mask(obs.frame, RED_RGB), 3) * (10000, 100, 1))": lambda o: (
        np_blobs(np_mask(o["frame"], (255, 0, 0), 0), 3)[1] @ (10000, 100, 1)
    ),
    "sum(blob_centroids(colour_mask(obs.frame, RED_RGB), 3) * ((100, 10), (1, 0.1), (0.01, 0.001)))": lambda o: (
        (
            np_blobs(np_mask(o["frame"], (255, 0, 0), 0), 3)[2]
            * ((100, 10), (1, 0.1), (0.01, 0.001))
        ).sum()
    ),
    "sum(colour_cell(obs.frame, RED_RGB, 2, 0, 2) * (10, 1))": lambda o: (
        np_cell(np_mask(o["frame"], (255, 0, 0), 0), 2, 2) @ (10, 1)
    ),
    "clip(obs.vel[0], -0.5, 0.5)": lambda o: np.clip(o["vel"][0], -0.5, 0.5),
    "between(obs.vel[1], -0.5, 0.5)": lambda o: -0.5 <= o["vel"][1] <= 0.5,
    "sqrt(abs(obs.vel[0]))": lambda o: np.sqrt(abs(o["vel"][0])),
    "round(obs.vel[0]) + floor(obs.vel[1]) + ceil(obs.vel[0]) + sign(obs.vel[1])": lambda o: (
        np.round(o["vel"][0]) + np.floor(o["vel"][1]) + np.ceil(o["vel"][0]) + np.sign(o["vel"][1])
    ),
    "int(obs.vel[0] * 3)": lambda o: int(o["vel"][0] * 3),
    "count(obs.grid) + any(obs.grid == 8) + all(obs.grid != 4)": lambda o: (
        np.count_nonzero(o["grid"]) + (o["grid"] == 8).any() + (o["grid"] != 4).all()
    ),
    "mean(obs.grid) + min(obs.vel) - max(obs.pos)": lambda o: (
        o["grid"].mean() + o["vel"].min() - o["pos"].max()
    ),
    "sum(where(obs.grid == 5, 2, obs.grid))": lambda o: np.where(
        o["grid"] == 5, 2, o["grid"]
    ).sum(),
    "len(obs.grid) + float(obs.dir) + bool(obs.carrying)": lambda o: (
        6 + o["dir"] + (o["carrying"] != 0)
    ),
}


@pytest.mark.parametrize("expr", list(CASES))
def test_primitive_matches_numpy(batch, expr):
    got = run_batch(expr, batch).astype(np.float64)
    want = np.array([CASES[expr](o) for o in rows(batch)], np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_every_shipped_category_has_primitives():
    cats = {p.category for p in REGISTRY.values()}
    assert cats == set(CATEGORIES)
    for name in ("abs", "min", "max", "clip", "sum", "any", "all", "sqrt", "where", "count"):
        assert REGISTRY[name].category == "math"


def test_adding_a_primitive_is_one_decorated_function():
    @primitive("math", "number", kinds={"k": "const"})
    def times_k_for_test(x, k=2):
        """x times the constant k."""
        return x * k

    try:
        assert "`times_k_for_test(x, k: const = 2) -> number`: x times the constant k." in (
            reference_markdown()
        )
        prog = compile_program("def f(obs):\n    return times_k_for_test(obs.dir, 3)\n", INPUTS)
        assert int(prog.fn({"dir": np.int32(4)})) == 12
        with pytest.raises(ValueError, match="already registered"):
            primitive("math", "number")(times_k_for_test)
    finally:
        del REGISTRY["times_k_for_test"]


def test_primitive_needs_a_docstring():
    def nodoc(x):
        return x

    with pytest.raises(ValueError, match="docstring"):
        primitive("math", "number")(nodoc)
