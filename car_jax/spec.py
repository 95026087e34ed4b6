"""RewardSpec: a task sentence plus its ordered sub-task programs, stored as one DSL source file.

```
\"\"\"Pick up the yellow key, open the door and reach the goal.\"\"\"


def carrying_key(obs):
    \"\"\"The agent is carrying the yellow key.\"\"\"
    return obs.carrying == KEY


def reached_goal(obs):
    ...
```
The module docstring is the task; the functions, in order, are the sub-tasks; the last one is
the whole task. Loading a file parses it (never executes it). `load(save(spec)) == spec`.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from car_jax.dsl import (
    DEFAULT_LIMITS,
    CompiledProgram,
    DSLCompileError,
    DSLError,
    Limits,
    check_program,
    compile_program,
)
from car_jax.dsl.grammar import describe_statement, parse_source
from car_jax.errors import UserError


@dataclass(frozen=True)
class Program:
    """One sub-task: its function name, one-line description (the docstring) and DSL source."""

    name: str
    description: str
    source: str

    def __post_init__(self) -> None:
        # Normalise layout so that a saved and re-loaded program compares equal.
        object.__setattr__(self, "source", textwrap.dedent(self.source).strip("\n").rstrip())

    @classmethod
    def make(cls, name: str, description: str, body: str) -> Program:
        """Build a program from its name, description and body lines (indentation added)."""
        doc = _string_literal(description)
        src = f"def {name}(obs):\n    {doc}\n" + textwrap.indent(textwrap.dedent(body), "    ")
        return cls(name, description, src)

    @classmethod
    def from_source(cls, source: str, origin: str = "<program>") -> Program:
        """Read name and docstring from one `def` (parsed, never run); DSLCompileError if not."""
        module, errors = parse_source(source, origin, DEFAULT_LIMITS)
        if module is None:
            raise DSLCompileError(errors)
        defs = [n for n in module.body if isinstance(n, ast.FunctionDef)]
        if len(defs) != 1 or len(module.body) != 1:
            raise DSLCompileError(
                [
                    DSLError(
                        origin,
                        1,
                        0,
                        "E-TOPLEVEL",
                        "a program is exactly one `def name(obs):`",
                        "submit each sub-task's program separately",
                    )
                ]  # fmt: skip
            )
        return cls(defs[0].name, _docstring(defs[0]), source)


@dataclass(frozen=True)
class RewardSpec:
    """The task sentence and its ordered sub-task programs; the last program is the whole task."""

    task: str
    programs: tuple[Program, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "programs", tuple(self.programs))

    @property
    def names(self) -> list[str]:
        """Program names, in order."""
        return [p.name for p in self.programs]

    def to_source(self) -> str:
        """The spec as one DSL source file (module docstring, then the functions in order)."""
        parts = [_string_literal(self.task)] + [p.source for p in self.programs]
        return "\n\n\n".join(parts) + "\n"

    @classmethod
    def from_source(
        cls, text: str, origin: str = "<spec>", limits: Limits = DEFAULT_LIMITS
    ) -> RewardSpec:
        """Parse a spec file's text (never executing it); DSLCompileError lists every problem."""
        file_limits = Limits(max_source_bytes=limits.max_source_bytes * limits.max_spec_programs)
        module, errors = parse_source(text, origin, file_limits)
        if module is None:
            raise DSLCompileError(errors)
        body = list(module.body)
        task = None
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            task = body.pop(0).value.value
        else:
            errors.append(DSLError(origin, 1, 0, "E-SPEC", "the spec has no module docstring",
                                   'start the file with """<the task in one sentence>"""'))  # fmt: skip
        programs = []
        for node in body:
            where = (origin, node.lineno, node.col_offset)
            if isinstance(node, ast.FunctionDef):
                if node.decorator_list:
                    errors.append(DSLError(*where, "E-SIGNATURE", "decorators are not allowed"))
                src = ast.get_source_segment(text, node) or ""
                programs.append(Program(node.name, _docstring(node), src))
            elif isinstance(node, ast.Import | ast.ImportFrom):
                errors.append(DSLError(*where, "E-IMPORT", "imports are not allowed"))
            else:
                errors.append(DSLError(*where, "E-TOPLEVEL",
                                       f"only function definitions may follow the docstring, "
                                       f"not {describe_statement(node)}"))  # fmt: skip
        if not programs and not errors:
            errors.append(DSLError(origin, 1, 0, "E-SPEC", "the spec defines no programs",
                                   "add one `def name(obs):` per sub-task"))  # fmt: skip
        if errors:
            raise DSLCompileError(errors)
        return cls(task or "", tuple(programs))

    def save(self, path: str | Path) -> Path:
        """Write the spec as a DSL source file; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_source(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> RewardSpec:
        """Read a spec file (UserError if unreadable; DSLCompileError if malformed)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"cannot read reward spec {str(path)!r}: {err}") from None
        return cls.from_source(text, origin=path.name)


def _docstring(node: ast.FunctionDef) -> str:
    doc = ast.get_docstring(node, clean=True)
    return doc.strip() if doc else ""


def _string_literal(text: str) -> str:
    """A Python string literal that parses back to exactly `text`."""
    plain = all(ch.isprintable() or ch == "\n" for ch in text)
    if plain and '"""' not in text and "\\" not in text and not text.endswith('"') and text:
        return f'"""{text}"""'
    return repr(text)


# --- compiling a whole spec ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class CompiledSpec:
    """Every program of a spec, compiled; `completion(obs)` evaluates all of them at once."""

    spec: RewardSpec
    programs: tuple[CompiledProgram, ...]
    _jit_cache: dict = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        """Program names, in order."""
        return [p.name for p in self.programs]

    def evaluate(self, obs: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        """(bool[K] complete, bool[K] NaN) on one observation; a NaN value is not complete."""
        done, nan = [], []
        for p in self.programs:
            v = jnp.asarray(p.fn(obs))
            # NOTE: NaN != 0 is True; a NaN value must not count as "complete".
            is_nan = jnp.isnan(v) if jnp.issubdtype(v.dtype, jnp.inexact) else jnp.bool_(False)
            done.append((v != 0) & ~is_nan)
            nan.append(is_nan)
        return jnp.stack(done), jnp.stack(nan)

    def completion(self, obs: Mapping[str, jax.Array]) -> jax.Array:
        """bool[K]: which sub-tasks are complete (value != 0, not NaN) in one observation."""
        return self.evaluate(obs)[0]

    def batched_completion(self, batch_dims: int = 1):
        """A cached `jit(vmap^batch_dims(completion))`: obs [B..., ...] -> bool[B..., K]."""
        if batch_dims not in self._jit_cache:
            f = self.completion
            for _ in range(batch_dims):
                f = jax.vmap(f)
            self._jit_cache[batch_dims] = jax.jit(f)
        return self._jit_cache[batch_dims]


def _spec_errors(spec: RewardSpec, limits: Limits) -> list[DSLError]:
    errors = []
    if not spec.programs:
        errors.append(DSLError("<spec>", 1, 0, "E-SPEC", "the spec has no programs",
                               "add one program per sub-task; the last is the whole task"))  # fmt: skip
    if len(spec.programs) > limits.max_spec_programs:
        errors.append(DSLError("<spec>", 1, 0, "E-SPEC",
                               f"the spec has {len(spec.programs)} programs; at most "
                               f"{limits.max_spec_programs}"))  # fmt: skip
    seen: set[str] = set()
    for p in spec.programs:
        if p.name in seen:
            errors.append(DSLError(p.name, 1, 0, "E-SPEC", f"two programs are named {p.name!r}",
                                   "give every sub-task its own name"))  # fmt: skip
        seen.add(p.name)
    return errors


def _def_name_error(p: Program) -> DSLError | None:
    try:
        module = ast.parse(p.source) if len(p.source) < 1 << 16 else None
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the program's own compile reports it
    first = module.body[0] if module and module.body else None
    if isinstance(first, ast.FunctionDef) and first.name != p.name:
        return DSLError(
            p.name, 1, 0, "E-SPEC",
            f"the program is listed as {p.name!r} but defines {first.name!r}",
            "use the same name in both places",
        )  # fmt: skip
    return None


def check_spec(
    spec: RewardSpec,
    inputs: Mapping[str, Any],
    constants: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[DSLError]:
    """Every error of every program of `spec` (empty when all compile); never raises for them."""
    errors = _spec_errors(spec, limits)
    for p in spec.programs:
        errors += check_program(p.source, inputs, constants, limits, label=p.name)
        name_err = _def_name_error(p)
        if name_err:
            errors.append(name_err)
    return errors


def compile_spec(
    spec: RewardSpec,
    inputs: Mapping[str, Any],
    constants: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    sprite_frames: Mapping[str, Any] | None = None,
) -> CompiledSpec:
    """Compile every program of `spec` once; DSLCompileError carries all programs' errors.

    `sprite_frames` (`task.sprite_frames(mode)`): the programs also take those inputs as cell ids
    (`car_jax.sprite_inputs.observe_cells`) and then read them without drawing the frame.
    """
    errors = _spec_errors(spec, limits)
    compiled = []
    for p in spec.programs:
        try:
            compiled.append(
                compile_program(
                    p.source, inputs, constants, limits, label=p.name, sprite_frames=sprite_frames
                )
            )
        except DSLCompileError as err:
            errors += err.errors
        name_err = _def_name_error(p)
        if name_err:
            errors.append(name_err)
    if errors:
        raise DSLCompileError(errors)
    return CompiledSpec(spec, tuple(compiled))
