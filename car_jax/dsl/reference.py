"""The DSL reference as markdown, generated from the primitive registry (prompts embed it)."""

from __future__ import annotations

from car_jax.dsl.errors import CODES
from car_jax.dsl.limits import DEFAULT_LIMITS, Limits
from car_jax.dsl.registry import ARG_KINDS, CATEGORIES, primitives

_INTRO = """\
# Reward program DSL

A reward program says whether one sub-task is complete in one observation. It is a restricted
Python function of one argument, `obs`, with a one-line docstring:

```python
def carrying_yellow_key(obs):
    \"\"\"The agent is carrying the yellow key.\"\"\"
    return obs.carrying == KEY and obs.carrying_colour == YELLOW
```

- Inputs are `obs.<name>` for the inputs the task declares (fixed-shape arrays); task constants
  are bare UPPER_CASE names (numbers or tuples such as `YELLOW_RGB`).
- Return a scalar bool (complete or not) or a number; a non-zero value counts as complete.
- Allowed: arithmetic `+ - * / // % **` (the exponent a small number literal), comparisons
  (chains like `0 <= x < 5`, `x in (A, B)`), `and` / `or` / `not`, `& | ^ ~` on bools and ints,
  `a if cond else b`, local names, tuple unpacking (`r, c = position_of(obs.grid, KEY)`),
  indexing (`obs.pos[0]`, `grid[r, c]` with computed integers, slices with constant bounds),
  tuples, `if` / `elif` / `else` with `return` in the branches, `pass`, and the primitives below.
- Conditions (`if`, `and`, `or`, `not`, `x if c else y`) must be scalars: reduce arrays with
  `all(...)` / `any(...)`. `obs.pos == (3, 4)` is elementwise; write `equal(obs.pos, (3, 4))`.
- Booleans count as 0/1 in arithmetic, as in Python. Tuples act as small arrays in arithmetic.
- Every `if` is compiled to a select: both branches are evaluated, so each must be valid for any
  input (computed indices are clamped into range; division by zero gives inf, not an error).
- Not allowed: imports, loops, comprehensions, `lambda`, nested `def`/`class`, `global`, `try`,
  `with`, `yield`, attributes other than `obs.<input>` (no methods: `sum(x)`, not `x.sum()`),
  names with double underscores, strings (except colour names passed to vision primitives),
  dicts and sets, and any function not listed below.
"""


def _limits_text(limits: Limits) -> str:
    return (
        f"- Limits: at most {limits.max_source_bytes} bytes of source, {limits.max_nodes} "
        f"syntax nodes and {limits.max_depth} levels of nesting per program; integer literals "
        f"within +-{limits.max_int}; exponents within +-{limits.max_exponent}.\n"
    )


def reference_markdown(limits: Limits = DEFAULT_LIMITS, with_errors: bool = False) -> str:
    """The DSL reference: syntax rules, then every registered primitive by category."""
    out = [_INTRO, _limits_text(limits), "\n## Argument kinds\n\n"]
    out += [f"- `{k}`: {v}\n" for k, v in ARG_KINDS.items()]
    out.append("\nArguments are `array` unless the signature says otherwise.\n")
    by_cat: dict[str, list] = {}
    for p in primitives():
        by_cat.setdefault(p.category, []).append(p)
    for cat, title in CATEGORIES.items():
        prims = by_cat.get(cat)
        if not prims:
            continue
        out.append(f"\n## {title}\n\n")
        out += [f"- `{p.signature}`: {p.doc}\n" for p in prims]
    if with_errors:
        out.append("\n## Error codes\n\n")
        out += [f"- `{code}`: {text}\n" for code, text in CODES.items()]
    return "".join(out)
