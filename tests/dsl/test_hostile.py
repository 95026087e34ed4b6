"""Hostile and malformed programs are refused with the right code, and none of them runs."""

from __future__ import annotations

import sys
import textwrap

import pytest
from dsl_helpers import CONSTANTS, INPUTS

from car_jax.dsl import CODES, DSLCompileError, Limits, check_program, compile_program

CANARY_MODULE = "carjax_canary_mod"


def prog(body: str) -> str:
    """Wrap body lines into `def f(obs):`."""
    return "def f(obs):\n" + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n"


# (id, source template, expected code). `{canary}` is replaced by the canary file's path.
HOSTILE = [
    ("import-top", "import os\n" + prog("return 1"), "E-IMPORT"),
    ("import-body", prog("import os\nreturn 1"), "E-IMPORT"),
    ("from-import", prog("from os import system\nreturn 1"), "E-IMPORT"),
    ("import-canary", prog(f"import {CANARY_MODULE}\nreturn 1"), "E-IMPORT"),
    ("dunder-import", prog(f"return __import__('{CANARY_MODULE}')"), "E-DUNDER"),
    ("dunder-walk", prog("return ().__class__.__bases__[0].__subclasses__()"), "E-DUNDER"),
    ("obs-dict", prog("return obs.__dict__"), "E-DUNDER"),
    ("obs-class", prog("return obs.__class__"), "E-DUNDER"),
    ("dunder-local", prog("__x = 1\nreturn __x"), "E-DUNDER"),
    ("getattr", prog("return getattr(obs, 'pos')"), "E-CALL"),
    ("setattr", prog("setattr(obs, 'pos', 1)\nreturn 1"), "E-CALL"),
    ("eval", prog("return eval('1 + 1')"), "E-CALL"),
    ("exec", prog("exec(\"open('{canary}', 'w')\")\nreturn 1"), "E-CALL"),
    ("open", prog("return open('{canary}', 'w').write('x')"), "E-CALL"),
    ("compile", prog("return compile('1', 'f', 'eval')"), "E-CALL"),
    ("print", prog("return print(1)"), "E-CALL"),
    ("breakpoint", prog("return breakpoint()"), "E-CALL"),
    ("type", prog("return type(obs)"), "E-CALL"),
    ("vars", prog("return vars()"), "E-CALL"),
    ("os-system", prog("return os.system('touch {canary}')"), "E-ATTR"),
    ("method", prog("return obs.pos.sum()"), "E-ATTR"),
    ("lambda", prog("return (lambda: 1)()"), "E-LAMBDA"),
    ("listcomp", prog("return sum([x for x in obs.pos])"), "E-COMPREHENSION"),
    ("genexp", prog("return any(x > 1 for x in obs.pos)"), "E-COMPREHENSION"),
    ("dictcomp", prog("return {k: 1 for k in obs.pos}"), "E-COMPREHENSION"),
    ("for", prog("s = 0\nfor x in obs.pos:\n    s = s + x\nreturn s"), "E-LOOP"),
    ("while-true", prog("while True:\n    pass\nreturn 1"), "E-LOOP"),
    ("global", prog("global KEY\nreturn 1"), "E-GLOBAL"),
    ("nonlocal", prog("nonlocal x\nreturn 1"), "E-GLOBAL"),
    ("try", prog("try:\n    return 1\nexcept Exception:\n    return 0"), "E-TRY"),
    ("raise", prog("raise SystemExit(1)"), "E-TRY"),
    ("with", prog("with open('{canary}', 'w') as fh:\n    pass\nreturn 1"), "E-WITH"),
    ("yield", prog("yield 1\nreturn 1"), "E-YIELD"),
    ("async", "async def f(obs):\n    await g()\n    return 1\n", "E-YIELD"),
    ("string-code", prog("return \"__import__('os').system('touch {canary}')\""), "E-STRING"),
    ("fstring", prog("return f'{{obs.pos}}'"), "E-STRING"),
    ("huge-pow", prog("return 10 ** 10 ** 10"), "E-POW"),
    ("traced-pow", prog("return obs.dir ** obs.dir"), "E-POW"),
    ("deep-nesting", prog("return " + "abs(" * 40 + "obs.dir" + ")" * 40), "E-LIMIT-DEPTH"),
    ("parser-depth", prog("return " + "-" * 3000 + "obs.dir"), "E-LIMIT-DEPTH"),
    ("oversize", prog("x = 1\n" * 1400 + "return x"), "E-LIMIT-SOURCE"),
    ("many-nodes", prog("return max(" + ", ".join(["obs.dir"] * 300) + ")"), "E-LIMIT-NODES"),
    ("big-int", prog("return obs.dir + 12345678901"), "E-LIMIT-INT"),
    ("undeclared-input", prog("return obs.secret"), "E-INPUT"),
    ("array-output", prog("return obs.pos"), "E-OUTPUT"),
    ("frame-output", prog("return obs.frame"), "E-OUTPUT"),
    ("tuple-output", prog("return (1, 2)"), "E-OUTPUT"),
    ("extra-arg", "def f(obs, x):\n    return 1\n", "E-SIGNATURE"),
    ("decorator", "@staticmethod\ndef f(obs):\n    return 1\n", "E-SIGNATURE"),
    ("nested-def", prog("def g():\n    return 1\nreturn 1"), "E-DEF"),
    ("class", prog("class A:\n    pass\nreturn 1"), "E-DEF"),
    ("item-assign", prog("obs.pos[0] = 1\nreturn 1"), "E-ASSIGN"),
    ("walrus", prog("return (x := 1)"), "E-ASSIGN"),
    ("none", prog("return None"), "E-CONST"),
    ("set", prog("return {1, 2}"), "E-CONTAINER"),
    ("no-return", prog("x = 1"), "E-RETURN"),
    ("missing-else", prog("if obs.dir > 0:\n    return 1"), "E-RETURN"),
    ("array-cond", prog("if obs.pos == GOAL_POS:\n    return 1\nreturn 0"), "E-COND"),
    ("unknown-name", prog("return undefined_thing"), "E-NAME"),
    ("shadow-const", prog("KEY = 3\nreturn KEY"), "E-NAME"),
    ("bool-index", prog("return sum(obs.grid[obs.grid > 0])"), "E-INDEX"),
    ("unpack", prog("a, b, c = obs.pos\nreturn a"), "E-UNPACK"),
    ("div-zero", prog("return 1 / 0"), "E-VALUE"),
    ("bare-obs", prog("return obs"), "E-OBS"),
    ("del", prog("x = 1\ndel x\nreturn 1"), "E-STMT"),
    ("assert", prog("assert False\nreturn 1"), "E-STMT"),
    ("match", prog("match obs.dir:\n    case 1:\n        return 1\nreturn 0"), "E-STMT"),
    ("matmul", prog("return obs.dir @ obs.dir"), "E-OP"),
    ("is", prog("return obs.dir is 1"), "E-OP"),
    ("syntax", "def f(obs) return 1\n", "E-SYNTAX"),
    ("null-byte", "def f(obs):\n    return 1\x00\n", "E-SYNTAX"),
    ("two-defs", prog("return 1") + prog("return 2"), "E-TOPLEVEL"),
    ("module-code", "open('{canary}', 'w')\n" + prog("return 1"), "E-TOPLEVEL"),
    ("colour-code", prog("return present(obs.frame, \"__import__('os')\")"), "E-ARGS"),
    ("image-kind", prog("return present(obs.pos, YELLOW_RGB)"), "E-ARGS"),
    ("star-args", prog("return sum(*obs.pos)"), "E-ARGS"),
    ("missing-arg", prog("return clip(obs.dir)"), "E-ARGS"),
    ("traced-const", prog("return near(obs.pos, GOAL_POS, obs.dir)"), "E-ARGS"),
]


@pytest.fixture(scope="module")
def canary(tmp_path_factory):
    """A module that, if ever imported, writes a file; and the file path programs aim at."""
    root = tmp_path_factory.mktemp("canary")
    target = root / "canary_was_here"
    (root / f"{CANARY_MODULE}.py").write_text(f"open({str(target)!r}, 'w').write('imported')\n")
    sys.path.insert(0, str(root))
    yield target
    sys.path.remove(str(root))


def test_enough_hostile_cases():
    assert len(HOSTILE) >= 40
    assert len({case[0] for case in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize(("case", "template", "code"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_refused_with_code_and_nothing_runs(canary, case, template, code):
    source = template.replace("{canary}", str(canary))
    with pytest.raises(DSLCompileError) as info:
        compile_program(source, INPUTS, CONSTANTS)
    codes = info.value.codes
    assert code in codes, f"{case}: expected {code}, got {info.value}"
    for err in info.value.errors:
        assert err.code in CODES
        assert err.line >= 1 and err.col >= 0
        assert err.message
        assert str(err).startswith(f"{err.program}:{err.line}:{err.col}: {err.code} ")
    # the canary: nothing was imported, no file was created
    assert not canary.exists()
    assert CANARY_MODULE not in sys.modules


def test_check_program_collects_every_error():
    source = prog("import os\nx = obs.secret\nfor i in obs.pos:\n    pass\nreturn eval('x')")
    errors = check_program(source, INPUTS, CONSTANTS)
    assert {"E-IMPORT", "E-INPUT", "E-LOOP", "E-CALL"} <= {e.code for e in errors}
    lines = {e.code: e.line for e in errors}
    assert lines["E-IMPORT"] == 2 and lines["E-INPUT"] == 3 and lines["E-LOOP"] == 4


def test_syntax_error_has_position():
    (err,) = check_program("def f(obs):\n    return (1 +\n", INPUTS)
    assert err.code == "E-SYNTAX" and err.line >= 2


def test_hints_name_close_inputs_and_primitives():
    (err,) = check_program(prog("return obs.carying == KEY"), INPUTS, CONSTANTS)
    assert err.code == "E-INPUT" and "carrying" in err.hint
    (err,) = check_program(prog("return euclid_distance(obs.pos, GOAL_POS)"), INPUTS, CONSTANTS)
    assert err.code == "E-CALL" and "euclidean_distance" in err.hint


def test_limits_are_configurable():
    source = prog("return abs(abs(abs(abs(obs.dir))))")
    compile_program(source, INPUTS)
    with pytest.raises(DSLCompileError) as info:
        compile_program(source, INPUTS, limits=Limits(max_depth=5))
    assert info.value.codes == ["E-LIMIT-DEPTH"]
    with pytest.raises(DSLCompileError) as info:
        compile_program(prog("return obs.dir + 50"), INPUTS, limits=Limits(max_int=10))
    assert info.value.codes == ["E-LIMIT-INT"]
    with pytest.raises(DSLCompileError) as info:
        compile_program(source, INPUTS, limits=Limits(max_source_bytes=20))
    assert info.value.codes == ["E-LIMIT-SOURCE"]
