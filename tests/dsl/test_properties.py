"""Property tests: random well-formed programs either compile or are refused with DSLError."""

from __future__ import annotations

import jax
import numpy as np
from dsl_helpers import CONSTANTS, INPUTS, random_obs
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from car_jax.dsl import REGISTRY, CompiledProgram, DSLCompileError, compile_program

LEAVES = [
    "obs.pos[0]", "obs.pos[1]", "obs.dir", "obs.carrying", "obs.vel[0]", "KEY", "GOAL_POS",
    "YELLOW_RGB", "obs.pos", "obs.grid", "obs.cells", "obs.frame", "obs.vel", "0", "1", "2",
    "-3", "0.5", "True", "False", "x", "y", "obs.nope", "'yellow'", "(1, 2)", "obs.grid[1, 2]",
    "obs.grid[x, y]", "obs.frame[0:2, :, 0]",
]  # fmt: skip
BINOPS = ["+", "-", "*", "/", "//", "%", "&", "|", "^", "==", "!=", "<", "<=", ">", ">=",
          "and", "or", "in", "not in"]  # fmt: skip
PRIMS = sorted(REGISTRY)


def expressions(depth: int) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(LEAVES)
    if depth == 0:
        return leaf
    sub = expressions(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(sub, st.sampled_from(BINOPS), sub).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        sub.map(lambda e: f"(not {e})"),
        sub.map(lambda e: f"(-{e})"),
        sub.map(lambda e: f"({e} ** 2)"),
        st.tuples(sub, sub, sub).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(PRIMS), st.lists(sub, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.tuples(sub, sub).map(lambda t: f"{t[0]}[{t[1]}]"),
    )


@st.composite
def programs(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["assign", "unpack", "if", "aug"]))
        e = draw(expressions(2))
        if kind == "assign":
            lines.append(f"{draw(st.sampled_from(['x', 'y']))} = {e}")
        elif kind == "unpack":
            lines.append(f"x, y = {e}")
        elif kind == "aug":
            lines.append(f"x += {e}")
        else:
            lines += [f"if {e}:", f"    return {draw(expressions(1))}"]
            if draw(st.booleans()):
                lines += ["else:", f"    y = {draw(expressions(1))}"]
    lines.append(f"return {draw(expressions(2))}")
    return 'def f(obs):\n    """Random."""\n' + "".join(f"    {ln}\n" for ln in lines)


_OBS = {k: v[0] for k, v in random_obs(np.random.default_rng(1), 1).items()}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
# Found by this test: a computed index out of range on an eager (numpy) call must clamp as
# under jit, not raise an internal error.
@example('def f(obs):\n    """Random."""\n    return (not obs.pos[obs.pos[0]])\n')
def test_random_programs_compile_or_raise_dsl_error(source):
    try:
        prog = compile_program(source, INPUTS, CONSTANTS)
    except DSLCompileError as err:
        assert err.errors and all(e.code.startswith("E-") for e in err.errors)
        return
    assert isinstance(prog, CompiledProgram)
    assert prog.output.shape == ()
    # an accepted program also runs (eagerly, under the same rules it was traced with)
    with jax.disable_jit():
        value = prog.fn(_OBS)
    assert value.shape == ()
