"""DSL semantics verification relies on: integer arithmetic on narrow ints does not wrap.

(NaN handling is tested in tests/test_spec.py and tests/test_verify.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from car_jax.dsl import compile_program

INPUTS = {
    "tiles": ((3, 3), "uint8", "tile kinds"),
    "level": ((), "uint8", "a small unsigned counter"),
    "speed": ((), "int8", "a signed byte"),
}
TILES = jnp.asarray([[3, 0, 2], [1, 10, 2], [2, 2, 255]], jnp.uint8)
OBS = {"tiles": TILES, "level": jnp.uint8(3), "speed": jnp.int8(100)}


@pytest.mark.parametrize(
    "body, expected",
    [
        ("return obs.tiles[0, 0] - 10 < 0", True),  # 3 - 10 = -7, not 249
        ("return obs.tiles[0, 0] - 10", -7),
        ("return -obs.level", -3),
        ("return obs.level * 100", 300),  # not 300 % 256 = 44
        ("return obs.tiles[2, 2] + 1", 256),
        ("return obs.speed + obs.speed", 200),  # int8: not -56
        ("return obs.level ** 3", 27),
        ("return (obs.level - 5) // 2", -1),
        ("return (obs.level - 5) % 4", 2),
        ("return count(obs.tiles - 2 < 0)", 2),  # whole arrays widen too: tiles 0 and 1
    ],
)
def test_integer_arithmetic_does_not_wrap(body, expected):
    prog = compile_program(f"def f(obs):\n    {body}\n", INPUTS, {})
    got = jax.jit(prog.fn)(OBS)
    # Python semantics on the same numbers:
    env = {k: np.asarray(v).astype(object) for k, v in OBS.items()}
    if "count(" not in body:
        want = eval(body.removeprefix("return ").replace("obs.", "obs_"),
                    {f"obs_{k}": v for k, v in env.items()})  # fmt: skip
        assert np.asarray(want).item() == expected
    assert np.asarray(got).item() == expected
