"""Resource limits on reward programs (configurable; defaults are generous for real programs)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds checked before a program is compiled.

    `max_source_bytes` per program, `max_nodes` statement/expression nodes, `max_depth` nesting
    of those nodes, integer literals within +-`max_int`, `**` exponents within +-`max_exponent`.
    The DSL ships no primitive that creates an array whose size comes from the program, so every
    array a program touches is sized by the task's input spec.
    """

    max_source_bytes: int = 8192
    max_nodes: int = 400
    max_depth: int = 32
    max_int: int = 10**9
    max_exponent: int = 16
    max_spec_programs: int = 64


DEFAULT_LIMITS = Limits()
