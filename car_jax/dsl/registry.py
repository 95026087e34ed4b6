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


def primitive(
    category: str,
    returns: str,
    kinds: dict[str, str] | None = None,
    name: str | None = None,
    min_args: int = 0,
) -> Callable[[Callable], Callable]:
    """Register the decorated jnp function as a DSL primitive (signature and doc taken from it)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown primitive category {category!r}; known: {sorted(CATEGORIES)}")
    kinds = dict(kinds or {})

    def register(fn: Callable) -> Callable:
        prim_name = name or fn.__name__.rstrip("_")
        if prim_name in REGISTRY:
            raise ValueError(f"primitive {prim_name!r} is already registered")
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        if not doc:
            raise ValueError(f"primitive {prim_name!r} needs a one-line docstring")
        params = []
        for p in inspect.signature(fn).parameters.values():
            kind = kinds.pop(p.name, "array")
            if kind not in ARG_KINDS:
                raise ValueError(f"primitive {prim_name!r}: unknown argument kind {kind!r}")
            params.append(
                Param(p.name, kind, p.default, variadic=p.kind is inspect.Parameter.VAR_POSITIONAL)
            )
        if kinds:
            raise ValueError(f"primitive {prim_name!r}: kinds for unknown parameters {kinds}")
        REGISTRY[prim_name] = Primitive(
            prim_name, fn, tuple(params), returns, doc[0], category, min_args
        )
        return fn

    return register


def primitives() -> list[Primitive]:
    """All registered primitives, in registration order."""
    return list(REGISTRY.values())


class ArgumentError(ValueError):
    """Raised by a primitive for an argument it cannot accept (reported as E-ARGS)."""
