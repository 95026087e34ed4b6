"""`car-jax check SPEC`: compile a reward-spec file against a task's inputs, print every error.

Exit status: 0 if every program compiles, 1 if any is refused, 2 on unreadable input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from car_jax.errors import UserError

NAME = "check"
HELP = "Compile a reward-spec file against a task's program inputs and print every error."

_DTYPES = {"bool", "int8", "int16", "int32", "uint8", "uint16", "uint32", "float16", "float32"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `car-jax check`."""
    parser.add_argument("spec", help="reward spec file (DSL source: docstring + functions)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--env", metavar="ID", help="registered task id whose inputs to use")
    src.add_argument(
        "--inputs",
        metavar="FILE.json",
        help='input spec JSON: {"inputs": {name: {"shape": [...], "dtype": "...", "doc": "..."}}, '
        '"constants": {NAME: number or list}}',
    )
    parser.add_argument(
        "--mode", default="state", help="input mode of the task: state or pixels (default state)"
    )


def load_input_spec(path: str | Path) -> tuple[dict[str, tuple], dict[str, Any]]:
    """Read an input-spec JSON file into (inputs, constants); UserError on any problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read input spec {str(path)!r}: {err}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"input spec {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        raise UserError(f'input spec {str(path)!r} must be an object with an "inputs" object')
    inputs: dict[str, tuple] = {}
    for name, field in data["inputs"].items():
        where = f"input spec {str(path)!r}, input {name!r}"
        if not name.isidentifier() or name.startswith("__"):
            raise UserError(f"{where}: the name must be a Python identifier without dunders")
        if not isinstance(field, dict):
            raise UserError(f'{where}: expected {{"shape": [...], "dtype": "...", "doc": "..."}}')
        shape, dtype = field.get("shape"), field.get("dtype")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 4096 for d in shape
        ):
            raise UserError(f"{where}: shape must be a list of sizes 0..4096, got {shape!r}")
        if dtype not in _DTYPES:
            raise UserError(f"{where}: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        inputs[name] = (tuple(shape), dtype, str(field.get("doc", "")))
    constants = data.get("constants", {})
    if not isinstance(constants, dict):
        raise UserError(f'input spec {str(path)!r}: "constants" must be an object')
    from car_jax.dsl import normalize_constants

    try:
        constants = normalize_constants(constants)
    except ValueError as err:
        raise UserError(f"input spec {str(path)!r}: {err}") from None
    return inputs, constants


def _task_inputs(env_id: str, mode: str) -> tuple[dict, dict]:
    import envs

    try:
        task = envs.make(env_id)
        task.check_mode(mode)
        return dict(task.inputs(mode)), dict(task.constants(mode))
    except envs.TaskError as err:
        raise UserError(str(err)) from None


def run(args: argparse.Namespace) -> int:
    """Compile every program of the spec; print one line per program and every error."""
    from car_jax.dsl import DSLCompileError
    from car_jax.spec import RewardSpec, check_spec

    if args.env:
        inputs, constants = _task_inputs(args.env, args.mode)
        against = f"task {args.env} ({args.mode} inputs)"
    else:
        inputs, constants = load_input_spec(args.inputs)
        against = f"input spec {args.inputs}"
    try:
        spec = RewardSpec.load(args.spec)
    except DSLCompileError as err:
        print(f"{args.spec}: the spec file is malformed ({len(err.errors)} error(s)):")
        for e in err.errors:
            print(f"  {e}")
        return 1
    errors = check_spec(spec, inputs, constants)
    print(f"{args.spec}: {len(spec.programs)} program(s) against {against}")
    print(f"task: {spec.task}")
    by_program: dict[str, list] = {}
    for e in errors:
        by_program.setdefault(e.program, []).append(e)
    for p in spec.programs:
        errs = by_program.pop(p.name, [])
        mark = "ok     " if not errs else "REFUSED"
        print(f"  {mark} {p.name}: {p.description}")
        for e in errs:
            print(f"      {e}")
    for errs in by_program.values():  # spec-level problems
        for e in errs:
            print(f"  {e}")
    if errors:
        print(f"{len(errors)} error(s); see `car-jax dsl` for what programs may use")
        return 1
    print("all programs compile")
    return 0
