"""Errors of the reward DSL: one `DSLError` per problem, all of a spec in one `DSLCompileError`.

Codes are short and stable (documented in the README) so tests, feedback prompts and
users can rely on them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every code the DSL emits, with a one-line meaning (the reference and the docs list these).
CODES: dict[str, str] = {
    "E-SYNTAX": "the source is not valid Python, or uses syntax the DSL does not support",
    "E-TOPLEVEL": "a program must be exactly one `def name(obs):` (a spec: a docstring and defs)",
    "E-SIGNATURE": "the function must take exactly one argument, `obs`, with no decorators",
    "E-IMPORT": "imports are not allowed",
    "E-DUNDER": "names and attributes with double underscores are not allowed",
    "E-ATTR": "attribute access other than `obs.<declared input>` is not allowed",
    "E-INPUT": "the program reads an input the task does not declare",
    "E-OBS": "`obs` can only be used as `obs.<input>`",
    "E-CALL": "the call is not to a registered primitive",
    "E-ARGS": "wrong number, kind or name of arguments to a primitive",
    "E-NAME": "unknown name, a name used before it is assigned, or a reserved name reassigned",
    "E-LOOP": "loops (`for`, `while`) are not allowed",
    "E-COMPREHENSION": "comprehensions and generator expressions are not allowed",
    "E-LAMBDA": "`lambda` is not allowed",
    "E-DEF": "nested functions and classes are not allowed",
    "E-GLOBAL": "`global` and `nonlocal` are not allowed",
    "E-TRY": "`try`/`except`/`raise` are not allowed",
    "E-WITH": "`with` is not allowed",
    "E-YIELD": "`yield`, `await` and async code are not allowed",
    "E-STRING": "strings are only allowed as the docstring or as a colour-name argument",
    "E-CONST": "this literal is not allowed (None, complex numbers, bytes, ...)",
    "E-CONTAINER": "dicts and sets are not allowed (use tuples)",
    "E-STMT": "this statement is not allowed",
    "E-ASSIGN": "only plain names (or a tuple of names) can be assigned",
    "E-OP": "this operator is not allowed",
    "E-POW": "the exponent of `**` must be a small number literal",
    "E-RETURN": "every path must end in `return <value>`",
    "E-COND": "a condition must be a scalar",
    "E-INDEX": "the index or slice is not valid for this value",
    "E-UNPACK": "tuple unpacking needs a value with exactly that many items",
    "E-TYPE": "an operation got values of the wrong type or shape",
    "E-VALUE": "a constant expression has no valid value (division by zero, overflow, ...)",
    "E-OUTPUT": "the program must return a scalar bool or number",
    "E-LIMIT-SOURCE": "the program source is too long",
    "E-LIMIT-NODES": "the program has too many syntax nodes",
    "E-LIMIT-DEPTH": "the program is nested too deeply",
    "E-LIMIT-INT": "an integer constant is out of range",
    "E-SPEC": "the reward spec is malformed (duplicate names, no programs, ...)",
}


@dataclass(frozen=True)
class DSLError:
    """One problem in one program: where it is, a stable code, what is wrong and how to fix it."""

    program: str
    line: int
    col: int
    code: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.program}:{self.line}:{self.col}: {self.code} {self.message}"
        if self.hint:
            text += f" hint: {self.hint}"
        return text


class DSLCompileError(Exception):
    """Raised when a program or spec is refused; carries every error found, not only the first."""

    def __init__(self, errors: list[DSLError]):
        self.errors = list(errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__(f"{len(self.errors)} error(s) in reward program(s):\n{lines}")

    @property
    def codes(self) -> list[str]:
        """The error codes, in order (handy in tests and logs)."""
        return [e.code for e in self.errors]
