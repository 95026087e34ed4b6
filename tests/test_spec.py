"""RewardSpec file format, compile_spec / check_spec, and the batched completion function."""

from __future__ import annotations

import keyword
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from car_jax.dsl import DSLCompileError
from car_jax.errors import UserError
from car_jax.spec import CompiledSpec, Program, RewardSpec, check_spec, compile_spec

INPUTS = {
    "pos": ((2,), "int32", "agent (row, col)"),
    "carrying": ((), "int32", "tile kind carried"),
    "grid": ((4, 4), "int32", "tile kinds"),
}
CONSTANTS = {"KEY": 5, "DOOR_OPEN": 3, "GOAL_POS": (3, 3)}

SPEC = RewardSpec(
    "Pick up the key, open the door, reach the goal.",
    (
        Program.make("has_key", "The agent carries the key.", "return obs.carrying == KEY"),
        Program.make("door_open", "A door is open.", "return contains(obs.grid, DOOR_OPEN)"),
        Program.make("at_goal", "The agent is on the goal.", "return equal(obs.pos, GOAL_POS)"),
    ),
)

BODIES = [
    "return obs.carrying == KEY",
    "if obs.pos[0] > 1:\n    return 1.0\nreturn 0.5",
    "r, c = obs.pos\nreturn manhattan_distance((r, c), GOAL_POS) <= 2",
]
names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s)
)
printable = st.characters(blacklist_categories=("Cs", "Cc"))
one_line = st.text(printable, max_size=40).map(str.strip)
task_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@st.composite
def specs(draw) -> RewardSpec:
    prog_names = draw(st.lists(names, min_size=1, max_size=4, unique=True))
    progs = [Program.make(n, draw(one_line), draw(st.sampled_from(BODIES))) for n in prog_names]
    return RewardSpec(draw(task_text), tuple(progs))


@settings(max_examples=60, deadline=None)
@given(specs())
def test_source_round_trip(spec):
    assert RewardSpec.from_source(spec.to_source()) == spec


def test_save_load_round_trip(tmp_path):
    path = SPEC.save(tmp_path / "sub" / "doorkey.spec")
    assert RewardSpec.load(path) == SPEC
    assert path.read_text().startswith('"""Pick up the key')


def test_from_source_reads_programs_in_order():
    spec = RewardSpec.from_source(SPEC.to_source())
    assert spec.names == ["has_key", "door_open", "at_goal"]
    assert spec.programs[1].description == "A door is open."


def test_loading_never_executes(tmp_path):
    canary = tmp_path / "ran"
    text = f'"""Task."""\nimport os\nopen({str(canary)!r}, \'w\')\ndef f(obs):\n    return 1\n'
    with pytest.raises(DSLCompileError) as info:
        RewardSpec.from_source(text)
    assert info.value.codes == ["E-IMPORT", "E-TOPLEVEL"]
    assert [e.line for e in info.value.errors] == [2, 3]
    assert not canary.exists() and "os" in sys.modules  # (os is always loaded; nothing new ran)


def test_syntax_error_in_spec_has_line_and_col():
    with pytest.raises(DSLCompileError) as info:
        RewardSpec.from_source('"""T."""\n\ndef f(obs):\n    return (1 +\n', origin="x.spec")
    (err,) = info.value.errors
    assert err.code == "E-SYNTAX" and err.program == "x.spec" and err.line >= 4


def test_spec_needs_docstring_and_programs():
    with pytest.raises(DSLCompileError) as info:
        RewardSpec.from_source("def f(obs):\n    return 1\n")
    assert info.value.codes == ["E-SPEC"]
    with pytest.raises(DSLCompileError) as info:
        RewardSpec.from_source('"""Only a task."""\n')
    assert info.value.codes == ["E-SPEC"]


def test_load_missing_file_is_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot read reward spec"):
        RewardSpec.load(tmp_path / "nope.spec")


def test_compile_spec_collects_errors_of_every_program():
    bad = RewardSpec(
        "t",
        (
            Program.make("a", "bad input", "return obs.nope"),
            Program.make("b", "fine", "return obs.carrying == KEY"),
            Program.make("c", "loop", "for i in obs.pos:\n    pass\nreturn 1"),
            Program.make("a", "duplicate", "return 1"),
        ),
    )
    with pytest.raises(DSLCompileError) as info:
        compile_spec(bad, INPUTS, CONSTANTS)
    by = {(e.program, e.code) for e in info.value.errors}
    assert {("a", "E-INPUT"), ("c", "E-LOOP"), ("a", "E-SPEC")} <= by
    assert not any(p == "b" for p, _ in by)
    assert {(e.program, e.code) for e in check_spec(bad, INPUTS, CONSTANTS)} == by
    assert check_spec(SPEC, INPUTS, CONSTANTS) == []


def test_program_name_must_match_def():
    spec = RewardSpec("t", (Program("other", "", "def f(obs):\n    return 1"),))
    assert [e.code for e in check_spec(spec, INPUTS)] == ["E-SPEC"]


@pytest.fixture(scope="module")
def compiled() -> CompiledSpec:
    return compile_spec(SPEC, INPUTS, CONSTANTS)


def test_completion_single_and_batched(compiled):
    obs = {
        "pos": jnp.array([3, 3], jnp.int32),
        "carrying": jnp.int32(5),
        "grid": jnp.zeros((4, 4), jnp.int32),
    }
    assert compiled.names == ["has_key", "door_open", "at_goal"]
    np.testing.assert_array_equal(jax.jit(compiled.completion)(obs), [True, False, True])
    rng = np.random.default_rng(0)
    batch = {
        "pos": rng.integers(0, 4, (64, 2)).astype(np.int32),
        "carrying": rng.choice([0, 5], 64).astype(np.int32),
        "grid": rng.integers(0, 4, (64, 4, 4)).astype(np.int32),
    }
    f = compiled.batched_completion()
    got = np.asarray(f(batch))
    assert got.shape == (64, 3) and got.dtype == np.bool_
    want = np.stack(
        [
            batch["carrying"] == 5,
            (batch["grid"] == 3).any(axis=(1, 2)),
            (batch["pos"] == (3, 3)).all(-1),
        ],
        -1,
    )
    np.testing.assert_array_equal(got, want)
    traces = [p.traces for p in compiled.programs]
    assert compiled.batched_completion() is f
    f({k: v + 0 for k, v in batch.items()})
    assert [p.traces for p in compiled.programs] == traces  # cached: no retrace
    two = compiled.batched_completion(2)(
        {k: v.reshape(8, 8, *v.shape[1:]) for k, v in batch.items()}
    )
    np.testing.assert_array_equal(np.asarray(two).reshape(64, 3), want)
    done, nan = compiled.evaluate(obs)
    np.testing.assert_array_equal(done, [True, False, True])
    assert not np.asarray(nan).any()


def test_nan_value_is_not_complete_and_is_flagged():
    spec = RewardSpec.from_source(
        '"""t."""\n\n\ndef ratio(obs):\n    """r."""\n    return obs.carrying / obs.carrying\n'
    )
    compiled = compile_spec(spec, INPUTS, CONSTANTS)
    obs = {"pos": jnp.array([0, 0], jnp.int32), "grid": jnp.zeros((4, 4), jnp.int32)}
    # 0 / 0 is NaN: Python would raise; the DSL must not count it as "complete" (NaN != 0).
    done, nan = jax.jit(compiled.evaluate)({**obs, "carrying": jnp.int32(0)})
    assert not bool(done[0]) and bool(nan[0])
    done, nan = compiled.evaluate({**obs, "carrying": jnp.int32(5)})
    assert bool(done[0]) and not bool(nan[0])
    assert not bool(compiled.completion({**obs, "carrying": jnp.int32(0)})[0])
