"""The reward DSL: grammar check, primitive registry, compiler to jnp, errors and limits.

Knows nothing of environments: a program is compiled against an input spec (name -> shape,
dtype, doc) and a mapping of named constants.
"""

from car_jax.dsl import library as _library  # noqa: F401  (registers the shipped primitives)
from car_jax.dsl.compiler import (
    CompiledProgram,
    check_program,
    compile_program,
    normalize_constants,
    normalize_inputs,
)
from car_jax.dsl.errors import CODES, DSLCompileError, DSLError
from car_jax.dsl.limits import DEFAULT_LIMITS, Limits
from car_jax.dsl.reference import reference_markdown
from car_jax.dsl.registry import (
    ARG_KINDS,
    CATEGORIES,
    REGISTRY,
    ArgumentError,
    Primitive,
    RegistrationError,
    primitive,
    primitives,
)

__all__ = [
    "ARG_KINDS",
    "CATEGORIES",
    "CODES",
    "DEFAULT_LIMITS",
    "REGISTRY",
    "ArgumentError",
    "CompiledProgram",
    "DSLCompileError",
    "DSLError",
    "Limits",
    "Primitive",
    "RegistrationError",
    "check_program",
    "compile_program",
    "normalize_constants",
    "normalize_inputs",
    "primitive",
    "primitives",
    "reference_markdown",
]
