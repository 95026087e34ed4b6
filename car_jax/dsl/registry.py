"""The primitive registry: every function a reward program may call is one decorated function.

```
@primitive(category="math", returns="number")
def sqrt(x):
    '''Square root, elementwise.'''
    return jnp.sqrt(x)
```
The decorator reads the parameter names and defaults from the signature; `kinds` says what each
argument must be (see `ARG_KINDS`). The DSL reference shown to the VLM is generated from here.
"""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass

# What an argument may be. The compiler checks and converts arguments before the call.
ARG_KINDS: dict[str, str] = {
    "array": "any number, bool, tuple of numbers or array (an input or a computed value)",
    "image": "an RGB frame: uint8 array of shape (H, W, 3), e.g. `obs.frame`",
    "const": "a compile-time number: a literal or a named constant, never an input",
    "colour": "an RGB triple constant such as `YELLOW_RGB`, or a colour name string such as "
    "`'yellow'` when the task defines `YELLOW_RGB`",
}

CATEGORIES: dict[str, str] = {
    "math": "Math and logic",
    "geometry": "Geometry on (row, col) or (x, y) positions",
    "grid": "Symbolic grids (2-D arrays of cell codes, optionally with per-cell vectors)",
    "vision": "Vision on RGB frames",
}


@dataclass(frozen=True)
class Param:
    """One parameter of a primitive: its name, kind, and default (if optional)."""

    name: str
    kind: str = "array"
    default: object = inspect.Parameter.empty
    variadic: bool = False

    @property
    def required(self) -> bool:
        """True when the caller must pass this argument."""
        return self.default is inspect.Parameter.empty and not self.variadic


@dataclass(frozen=True)
class Primitive:
    """A registered DSL function: the jnp implementation plus what the reference says about it."""

    name: str
    fn: Callable
    params: tuple[Param, ...]
    returns: str
    doc: str
    category: str
    min_args: int = 0

    @property
    def signature(self) -> str:
        """The call signature as the reference prints it, e.g. `clip(x, lo, hi) -> number`."""
        parts = []
        for p in self.params:
            s = ("*" if p.variadic else "") + p.name
            if p.kind != "array":
                s += f": {p.kind}"
            if not p.required and not p.variadic:
                s += f" = {p.default!r}"
            parts.append(s)
        return f"{self.name}({', '.join(parts)}) -> {self.returns}"


REGISTRY: dict[str, Primitive] = {}

_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# Parameter kinds a DSL call can fill: the compiler passes arguments by position or by name.
_CALLABLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)


class RegistrationError(ValueError):
    """A primitive that cannot be registered (duplicate name, no docstring, unusable signature)."""

    def __init__(self, name: str | None, message: str):
        super().__init__(message)
        self.name = name


def _check_name(prim_name: str) -> None:
    from car_jax.dsl.grammar import DANGEROUS, RESERVED  # grammar imports this module

    if not isinstance(prim_name, str) or not _NAME.match(prim_name) or keyword.iskeyword(prim_name):
        raise RegistrationError(
            prim_name,
            f"primitive name {prim_name!r} is not a lower-case Python name (letters, digits, "
            "underscores; not a keyword)",
        )
    if prim_name in RESERVED or prim_name in DANGEROUS:
        raise RegistrationError(
            prim_name,
            f"primitive name {prim_name!r} is reserved: reward programs may never call "
            f"{prim_name}(); pick another name",
        )
    if prim_name in REGISTRY:
        raise RegistrationError(prim_name, f"primitive {prim_name!r} is already registered")


def _signature(prim_name: str, fn: Callable) -> inspect.Signature:
    if not callable(fn):
        raise RegistrationError(prim_name, f"primitive {prim_name!r} is not a function")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        raise RegistrationError(
            prim_name, f"primitive {prim_name!r} has no readable signature; wrap it in a def"
        ) from None
    for p in sig.parameters.values():
        if p.kind not in _CALLABLE_KINDS:
            raise RegistrationError(
                prim_name,
                f"primitive {prim_name!r}: parameter {p.name!r} is {p.kind.description}; DSL "
                "calls fill plain parameters (by position or name) and at most one *args",
            )
    return sig


def primitive(
    category: str,
    returns: str,
    kinds: dict[str, str] | None = None,
    name: str | None = None,
    min_args: int = 0,
) -> Callable[[Callable], Callable]:
    """Register the decorated jnp function as a DSL primitive (signature and doc taken from it).

    Raises:
      RegistrationError: an unknown category or kind, an empty `returns`, a duplicate or
        reserved name, no docstring, or parameters a DSL call cannot fill.
    """
    if category not in CATEGORIES:
        raise RegistrationError(
            name, f"unknown primitive category {category!r}; known: {sorted(CATEGORIES)}"
        )
    kinds = dict(kinds or {})

    def register(fn: Callable) -> Callable:
        prim_name = name or getattr(fn, "__name__", "").rstrip("_")
        _check_name(prim_name)
        if not isinstance(returns, str) or not returns.strip():
            raise RegistrationError(
                prim_name,
                f"primitive {prim_name!r} needs `returns`, the result type the reference shows "
                "(e.g. 'bool', 'int', 'float[2]')",
            )
        sig = _signature(prim_name, fn)
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        if not doc:
            raise RegistrationError(
                prim_name,
                f"primitive {prim_name!r} needs a one-line docstring saying what it returns",
            )
        params = []
        for p in sig.parameters.values():
            kind = kinds.pop(p.name, "array")
            if kind not in ARG_KINDS:
                raise RegistrationError(
                    prim_name,
                    f"primitive {prim_name!r}: unknown argument kind {kind!r} for {p.name!r}; "
                    f"known kinds: {', '.join(ARG_KINDS)}",
                )
            params.append(
                Param(p.name, kind, p.default, variadic=p.kind is inspect.Parameter.VAR_POSITIONAL)
            )
        if kinds:
            raise RegistrationError(
                prim_name, f"primitive {prim_name!r}: kinds for unknown parameters {kinds}"
            )
        REGISTRY[prim_name] = Primitive(
            prim_name, fn, tuple(params), returns, doc[0], category, min_args
        )
        return fn

    return register


def unregister(name: str) -> None:
    """Remove a primitive (used to roll back a plugin that failed half-way); unknown names are ignored."""
    REGISTRY.pop(name, None)


def primitives() -> list[Primitive]:
    """All registered primitives, in registration order."""
    return list(REGISTRY.values())


class ArgumentError(ValueError):
    """Raised by a primitive for an argument it cannot accept (reported as E-ARGS)."""
