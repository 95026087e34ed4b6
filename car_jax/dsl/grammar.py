"""The grammar check: parse a program and walk its AST against an allow-list.

Nothing here evaluates any part of the program; it only reads the syntax tree. Every problem is
collected as a `DSLError` (with line, column, code, message and hint) so a whole spec can be
reported in one round.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Mapping, Sequence

from car_jax.dsl.errors import DSLError
from car_jax.dsl.limits import Limits
from car_jax.dsl.registry import REGISTRY

RESERVED = frozenset({"obs", "True", "False", "None"})
# Builtins a model may reach for that would run code or touch the outside world.
DANGEROUS = frozenset(
    {
        "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "hasattr", "globals",
        "locals", "vars", "dir", "input", "print", "breakpoint", "help", "exit", "quit", "type",
        "object", "super", "memoryview", "bytearray", "classmethod", "staticmethod", "property",
        "iter", "next", "id", "hash", "isinstance", "issubclass", "callable", "format", "repr",
        "chr", "ord", "bin", "hex", "oct", "map", "filter", "zip", "range", "enumerate", "sorted",
        "reversed", "list", "dict", "set", "frozenset", "tuple", "str", "bytes", "slice",
    }
)  # fmt: skip

_STMT_CODES: dict[type, tuple[str, str]] = {
    ast.For: ("E-LOOP", "`for` loops are not allowed"),
    ast.AsyncFor: ("E-LOOP", "`async for` loops are not allowed"),
    ast.While: ("E-LOOP", "`while` loops are not allowed"),
    ast.Import: ("E-IMPORT", "imports are not allowed"),
    ast.ImportFrom: ("E-IMPORT", "imports are not allowed"),
    ast.Global: ("E-GLOBAL", "`global` is not allowed"),
    ast.Nonlocal: ("E-GLOBAL", "`nonlocal` is not allowed"),
    ast.Try: ("E-TRY", "`try` is not allowed"),
    ast.Raise: ("E-TRY", "`raise` is not allowed"),
    ast.With: ("E-WITH", "`with` is not allowed"),
    ast.AsyncWith: ("E-WITH", "`async with` is not allowed"),
    ast.FunctionDef: ("E-DEF", "nested function definitions are not allowed"),
    ast.AsyncFunctionDef: ("E-DEF", "nested function definitions are not allowed"),
    ast.ClassDef: ("E-DEF", "class definitions are not allowed"),
    ast.Delete: ("E-STMT", "`del` is not allowed"),
    ast.Assert: ("E-STMT", "`assert` is not allowed"),
    ast.Break: ("E-STMT", "`break` is not allowed"),
    ast.Continue: ("E-STMT", "`continue` is not allowed"),
    ast.Match: ("E-STMT", "`match` is not allowed"),
}
if hasattr(ast, "TryStar"):
    _STMT_CODES[ast.TryStar] = ("E-TRY", "`try` is not allowed")

_STMT_HINTS = {
    "E-LOOP": "use array primitives instead (sum, any, all, count, mask_of, position_of, ...)",
    "E-IMPORT": "everything a program may use is listed in the DSL reference; call it directly",
    "E-TRY": "programs cannot fail at run time; compute the value with `where` or `if`",
    "E-DEF": "write one function per sub-task; compute helper values as local names",
}

_BINOPS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.BitAnd, ast.BitOr, ast.BitXor,
)  # fmt: skip
_COUNTED = (ast.stmt, ast.expr, ast.keyword, ast.arg)


def _close(name: str, choices: Sequence[str]) -> str:
    match = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f"did you mean {', '.join(match)}?" if match else ""


def _is_dunder(name: str) -> bool:
    return name.startswith("__") or name.endswith("__")


def parse_source(
    source: str, label: str, limits: Limits
) -> tuple[ast.Module | None, list[DSLError]]:
    """Parse `source` (never executing it) after checking its size; SyntaxError -> E-SYNTAX."""
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > limits.max_source_bytes:
        return None, [
            DSLError(
                label,
                1,
                0,
                "E-LIMIT-SOURCE",
                f"the source is {size} bytes; at most {limits.max_source_bytes} are allowed",
                "write a shorter program: one sub-task per function, helpers as local names",
            )  # fmt: skip
        ]
    try:
        return ast.parse(source, mode="exec"), []
    except SyntaxError as err:
        return None, [
            DSLError(
                label,
                err.lineno or 1,
                max((err.offset or 1) - 1, 0),
                "E-SYNTAX",
                f"invalid syntax: {err.msg}",
                "write plain Python: `def name(obs):` and a body",
            )  # fmt: skip
        ]
    except (RecursionError, MemoryError):
        return None, [
            DSLError(
                label,
                1,
                0,
                "E-LIMIT-DEPTH",
                "the program is nested too deeply to parse",
                "flatten the expression with local names",
            )  # fmt: skip
        ]
    except ValueError as err:  # e.g. null bytes in the source
        return None, [DSLError(label, 1, 0, "E-SYNTAX", f"invalid source: {err}", "")]


def split_program(module: ast.Module, label: str) -> tuple[ast.FunctionDef | None, list[DSLError]]:
    """The single `def` of a program module; anything else at top level is refused."""
    errors: list[DSLError] = []
    defs: list[ast.FunctionDef] = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef):
            defs.append(node)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            errors.append(_err(label, node, "E-IMPORT", "imports are not allowed",
                               _STMT_HINTS["E-IMPORT"]))  # fmt: skip
        elif isinstance(node, ast.AsyncFunctionDef):
            errors.append(_err(label, node, "E-YIELD", "async functions are not allowed",
                               "write `def name(obs):`"))  # fmt: skip
        else:
            errors.append(
                _err(
                    label,
                    node,
                    "E-TOPLEVEL",
                    f"only one `def name(obs):` may appear at top level, not {_what(node)}",
                    "put every computation inside the function",
                )  # fmt: skip
            )
    if len(defs) != 1 and not errors:
        errors.append(
            DSLError(
                label,
                1,
                0,
                "E-TOPLEVEL",
                f"a program is exactly one `def name(obs):`; found {len(defs)}",
                "submit each sub-task's program separately",
            )  # fmt: skip
        )
    if len(defs) != 1:
        return None, errors
    return defs[0], errors


_STATEMENT_WORDS = {
    "Expr": "an expression statement",
    "Assign": "an assignment",
    "AnnAssign": "an annotated assignment",
    "AugAssign": "an augmented assignment",
    "ClassDef": "a class definition",
    "AsyncFunctionDef": "an async function definition",
    "Import": "an import",
    "ImportFrom": "an import",
    "If": "an if statement",
    "For": "a for loop",
    "While": "a while loop",
}


def describe_statement(node: ast.AST) -> str:
    """A statement's kind in words, with its article: "an assignment", "an If statement"."""
    name = type(node).__name__
    article = "an" if name[:1] in "AEIOU" else "a"
    return _STATEMENT_WORDS.get(name, f"{article} {name} statement")


_what = describe_statement


def _err(program: str, node: ast.AST, code: str, message: str, hint: str = "") -> DSLError:
    return DSLError(
        program, getattr(node, "lineno", 1), getattr(node, "col_offset", 0), code, message, hint
    )


def measure(fn: ast.AST) -> tuple[int, int]:
    """(node count, nesting depth) of statement/expression nodes, computed without recursion."""
    count, deepest = 0, 0
    stack: list[tuple[ast.AST, int]] = [(fn, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, _COUNTED):
            count += 1
            depth += 1
            deepest = max(deepest, depth)
        stack.extend((child, depth) for child in ast.iter_child_nodes(node))
    return count, deepest


def always_returns(stmts: Sequence[ast.stmt]) -> bool:
    """True when every path through `stmts` ends in a `return`."""
    for stmt in stmts:
        if isinstance(stmt, ast.Return):
            return True
        if isinstance(stmt, ast.If) and always_returns(stmt.body) and always_returns(stmt.orelse):
            return True
    return False


def assigned_names(fn: ast.FunctionDef) -> dict[str, ast.AST]:
    """Every local name the function assigns (first assignment node of each)."""
    names: dict[str, ast.AST] = {}

    def add_target(t: ast.AST) -> None:
        if isinstance(t, ast.Name):
            names.setdefault(t.id, t)
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                add_target(e)

    stack: list[ast.stmt] = list(fn.body)
    while stack:
        s = stack.pop()
        if isinstance(s, ast.Assign):
            for t in s.targets:
                add_target(t)
        elif isinstance(s, ast.AugAssign | ast.AnnAssign):
            add_target(s.target)
        elif isinstance(s, ast.If):
            stack.extend(s.body)
            stack.extend(s.orelse)
    return names


class Checker:
    """Walks one function's AST and collects every departure from the allow-list."""

    def __init__(
        self,
        fn: ast.FunctionDef,
        inputs: Sequence[str],
        constants: Sequence[str],
        limits: Limits,
    ):
        self.fn = fn
        self.program = fn.name
        self.inputs = list(inputs)
        self.constants = set(constants)
        self.limits = limits
        self.errors: list[DSLError] = []
        self.locals = set(assigned_names(fn))

    def add(self, node: ast.AST, code: str, message: str, hint: str = "") -> None:
        """Record one error at `node`."""
        self.errors.append(_err(self.program, node, code, message, hint))

    # --- the function itself -----------------------------------------------------------------
    def check(self) -> list[DSLError]:
        """Run every check; returns the errors (empty when the program is allowed)."""
        fn = self.fn
        count, depth = measure(fn)
        if count > self.limits.max_nodes:
            self.add(fn, "E-LIMIT-NODES",
                     f"the program has {count} syntax nodes; at most {self.limits.max_nodes}",
                     "simplify it or split the sub-task")  # fmt: skip
        if depth > self.limits.max_depth:
            self.add(fn, "E-LIMIT-DEPTH",
                     f"the program nests {depth} levels deep; at most {self.limits.max_depth}",
                     "flatten nested expressions with local names")  # fmt: skip
            return self.errors  # NOTE: the walk below recurses; never run it on deep trees
        if _is_dunder(fn.name):
            self.add(fn, "E-DUNDER", f"the function name {fn.name!r} uses double underscores")
        self._signature(fn)
        for name, node in assigned_names(fn).items():
            self._check_assignable(name, node)
        body = fn.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body = body[1:]
        self.stmts(body)
        if not always_returns(body):
            last = fn.body[-1]
            self.add(getattr(last, "end_lineno", None) and last or fn, "E-RETURN",
                     "not every path through the function ends in `return <value>`",
                     "end the function (and every if/else branch that does not fall through) "
                     "with a return")  # fmt: skip
        return self.errors

    def _signature(self, fn: ast.FunctionDef) -> None:
        a = fn.args
        if fn.decorator_list:
            self.add(fn.decorator_list[0], "E-SIGNATURE", "decorators are not allowed")
        ok = (
            len(a.args) + len(a.posonlyargs) == 1
            and not a.vararg
            and not a.kwarg
            and not a.kwonlyargs
            and not a.defaults
        )
        names = [x.arg for x in a.posonlyargs + a.args]
        if not ok or names != ["obs"]:
            self.add(fn, "E-SIGNATURE",
                     f"the function must take exactly one argument named `obs`, not ({', '.join(names)})",
                     f"write `def {fn.name}(obs):`")  # fmt: skip
        for ann in [x.annotation for x in a.posonlyargs + a.args] + [fn.returns]:
            if ann is not None and not isinstance(ann, ast.Name | ast.Constant):
                self.add(ann, "E-SIGNATURE", "only simple type annotations are allowed",
                         "drop the annotation")  # fmt: skip

    def _check_assignable(self, name: str, node: ast.AST) -> None:
        if _is_dunder(name):
            self.add(node, "E-DUNDER", f"the name {name!r} uses double underscores")
        elif name in RESERVED:
            self.add(node, "E-NAME", f"{name!r} cannot be assigned", "pick another local name")
        elif name in self.constants:
            self.add(node, "E-NAME", f"{name!r} is a task constant and cannot be reassigned",
                     "pick another local name")  # fmt: skip
        elif name in REGISTRY:
            self.add(node, "E-NAME", f"{name!r} is a primitive and cannot be reassigned",
                     "pick another local name")  # fmt: skip

    # --- statements ----------------------------------------------------------------------------
    def stmts(self, stmts: Sequence[ast.stmt]) -> None:
        """Check a block of statements."""
        for s in stmts:
            self.stmt(s)

    def stmt(self, s: ast.stmt) -> None:
        """Check one statement."""
        if type(s) in _STMT_CODES:
            code, msg = _STMT_CODES[type(s)]
            self.add(s, code, msg, _STMT_HINTS.get(code, ""))
            return
        if isinstance(s, ast.Return):
            if s.value is None:
                self.add(s, "E-RETURN", "`return` needs a value", "return a bool or a number")
            else:
                self.expr(s.value)
        elif isinstance(s, ast.Assign):
            for t in s.targets:
                self.target(t)
            self.expr(s.value)
        elif isinstance(s, ast.AugAssign):
            self.target(s.target)
            if not isinstance(s.op, _BINOPS) or isinstance(s.op, ast.Pow):
                self.add(s, "E-OP", f"augmented `{type(s.op).__name__}` is not allowed",
                         "write `x = x op y`")  # fmt: skip
            self.expr(s.value)
        elif isinstance(s, ast.AnnAssign):
            self.target(s.target)
            if s.value is None:
                self.add(s, "E-ASSIGN", "a bare annotation assigns nothing", "write `x = value`")
            else:
                self.expr(s.value)
            if not isinstance(s.annotation, ast.Name | ast.Constant):
                self.add(s.annotation, "E-SIGNATURE", "only simple type annotations are allowed")
        elif isinstance(s, ast.If):
            self.expr(s.test)
            self.stmts(s.body)
            self.stmts(s.orelse)
        elif isinstance(s, ast.Pass):
            pass
        elif isinstance(s, ast.Expr):
            before = len(self.errors)
            self.expr(s.value)
            if len(self.errors) == before:
                self.add(s, "E-STMT", "an expression statement has no effect",
                         "assign it to a name or return it")  # fmt: skip
        else:
            self.add(s, "E-STMT", f"{type(s).__name__} statements are not allowed")

    def target(self, t: ast.AST) -> None:
        """Check an assignment target: a name or a tuple of names."""
        if isinstance(t, ast.Name):
            return
        if isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                self.target(e)
            return
        if isinstance(t, ast.Attribute):
            if _is_dunder(t.attr):
                self.add(t, "E-DUNDER", f"the attribute {t.attr!r} uses double underscores")
            else:
                self.add(t, "E-ATTR", "attributes cannot be assigned", "use a local name")
            return
        if isinstance(t, ast.Subscript):
            self.add(t, "E-ASSIGN", "array elements cannot be assigned (arrays are immutable)",
                     "use `where(mask, new, old)` to build a modified array")  # fmt: skip
            return
        self.add(t, "E-ASSIGN", "only names or tuples of names can be assigned")

    # --- expressions ---------------------------------------------------------------------------
    def expr(self, e: ast.expr, string_ok: bool = False, in_slice: bool = False) -> None:
        """Check one expression (recursively)."""
        if isinstance(e, ast.Constant):
            self._constant(e, string_ok, in_slice)
        elif isinstance(e, ast.Name):
            self._name(e)
        elif isinstance(e, ast.Attribute):
            self._attribute(e)
        elif isinstance(e, ast.UnaryOp):
            self.expr(e.operand)
        elif isinstance(e, ast.BinOp):
            if not isinstance(e.op, _BINOPS):
                self.add(e, "E-OP", f"the operator {type(e.op).__name__} is not allowed",
                         "use + - * / // % ** & | ^ and comparisons")  # fmt: skip
            if isinstance(e.op, ast.Pow):
                self._exponent(e.right)
            self.expr(e.left)
            self.expr(e.right)
        elif isinstance(e, ast.BoolOp):
            for v in e.values:
                self.expr(v)
        elif isinstance(e, ast.Compare):
            for op in e.ops:
                if isinstance(op, ast.Is | ast.IsNot):
                    self.add(e, "E-OP", "`is` / `is not` are not allowed", "use == or !=")
            self.expr(e.left)
            for c in e.comparators:
                self.expr(c)
        elif isinstance(e, ast.IfExp):
            self.expr(e.test)
            self.expr(e.body)
            self.expr(e.orelse)
        elif isinstance(e, ast.Call):
            self._call(e)
        elif isinstance(e, ast.Subscript):
            self.expr(e.value)
            self.expr(e.slice, in_slice=True)
        elif isinstance(e, ast.Slice):
            for part in (e.lower, e.upper, e.step):
                if part is not None:
                    self.expr(part)
        elif isinstance(e, ast.Tuple | ast.List):
            for x in e.elts:
                self.expr(x, in_slice=in_slice)
        elif isinstance(e, ast.Starred):
            self.add(e, "E-SYNTAX", "starred expressions are not supported")
        elif isinstance(e, ast.Dict | ast.Set):
            self.add(e, "E-CONTAINER", "dicts and sets are not allowed", "use a tuple")
        elif isinstance(e, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            self.add(e, "E-COMPREHENSION", "comprehensions are not allowed",
                     "use array primitives (sum, any, all, mask_of, ...) instead of iterating")  # fmt: skip
        elif isinstance(e, ast.Lambda):
            self.add(e, "E-LAMBDA", "`lambda` is not allowed", "compute the value directly")
        elif isinstance(e, ast.Yield | ast.YieldFrom | ast.Await):
            self.add(e, "E-YIELD", f"`{type(e).__name__.lower()}` is not allowed")
        elif isinstance(e, ast.NamedExpr):
            self.add(e, "E-ASSIGN", "the walrus operator `:=` is not allowed",
                     "assign on its own line")  # fmt: skip
        elif isinstance(e, ast.JoinedStr | ast.FormattedValue):
            self.add(e, "E-STRING", "f-strings are not allowed")
        else:
            self.add(e, "E-SYNTAX", f"{type(e).__name__} expressions are not supported")

    def _constant(self, e: ast.Constant, string_ok: bool, in_slice: bool) -> None:
        v = e.value
        if isinstance(v, bool):
            return
        if isinstance(v, int):
            if abs(v) > self.limits.max_int:
                self.add(e, "E-LIMIT-INT",
                         f"the integer {v if len(str(v)) < 30 else str(v)[:20] + '...'} is out of "
                         f"range (at most +-{self.limits.max_int})")  # fmt: skip
        elif isinstance(v, float):
            return
        elif isinstance(v, str):
            if not string_ok:
                self.add(e, "E-STRING",
                         "strings are only allowed as the docstring or a colour-name argument",
                         "programs are not code generators; use named constants")  # fmt: skip
        elif v is Ellipsis and in_slice:
            return
        else:
            what = "None" if v is None else type(v).__name__
            self.add(e, "E-CONST", f"the literal {what} is not allowed",
                     "use numbers, True/False or tuples")  # fmt: skip

    def _name(self, e: ast.Name) -> None:
        n = e.id
        if _is_dunder(n):
            self.add(e, "E-DUNDER", f"the name {n!r} uses double underscores")
        elif n == "obs":
            self.add(e, "E-OBS", "`obs` can only be used as `obs.<input>`",
                     f"declared inputs: {', '.join(self.inputs)}")  # fmt: skip
        elif n in self.locals or n in self.constants:
            return
        elif n in REGISTRY:
            self.add(e, "E-NAME", f"the primitive {n!r} can only be called", f"write `{n}(...)`")
        elif n in DANGEROUS:
            self.add(e, "E-NAME", f"{n!r} is not available in reward programs",
                     "programs may only use obs.<input>, constants, locals and primitives")  # fmt: skip
        else:
            known = sorted(self.locals | self.constants)
            self.add(e, "E-NAME", f"unknown name {n!r}",
                     _close(n, known) or "names are locals, task constants (UPPER_CASE) or "
                     "obs.<input>")  # fmt: skip

    def _attribute(self, e: ast.Attribute) -> None:
        if _is_dunder(e.attr):
            self.add(e, "E-DUNDER", f"the attribute {e.attr!r} uses double underscores",
                     "only obs.<input> attributes exist")  # fmt: skip
            if not (isinstance(e.value, ast.Name) and e.value.id == "obs"):
                self.expr(e.value)
            return
        if isinstance(e.value, ast.Name) and e.value.id == "obs":
            if e.attr not in self.inputs:
                self.add(e, "E-INPUT", f"the task declares no input {e.attr!r}",
                         (_close(e.attr, self.inputs) + " " if _close(e.attr, self.inputs) else "")
                         + f"declared inputs: {', '.join(self.inputs) or '(none)'}")  # fmt: skip
            return
        self.add(e, "E-ATTR", f"the attribute {e.attr!r} is not allowed",
                 "only obs.<input> is an attribute; methods are primitives, e.g. sum(x) "
                 "not x.sum()")  # fmt: skip
        self.expr(e.value)

    def _exponent(self, e: ast.expr) -> None:
        v = e
        if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub | ast.UAdd):
            v = v.operand
        ok = (
            isinstance(v, ast.Constant)
            and isinstance(v.value, int | float)
            and not isinstance(v.value, bool)
            and abs(v.value) <= self.limits.max_exponent
        )
        if not ok:
            self.add(e, "E-POW",
                     f"the exponent of ** must be a number literal within +-{self.limits.max_exponent}",
                     "write e.g. x ** 2 or sqrt(x)")  # fmt: skip

    def _call(self, e: ast.Call) -> None:
        f = e.func
        prim = None
        if isinstance(f, ast.Name):
            if _is_dunder(f.id):
                self.add(f, "E-DUNDER", f"the name {f.id!r} uses double underscores")
            elif f.id in self.locals:
                self.add(f, "E-CALL", f"the local {f.id!r} is not a function")
            elif f.id in REGISTRY:
                prim = REGISTRY[f.id]
            elif f.id in DANGEROUS:
                self.add(f, "E-CALL", f"{f.id}() is not available in reward programs",
                         "programs cannot run code, touch files or inspect objects; see the "
                         "DSL reference for the primitives")  # fmt: skip
            else:
                self.add(f, "E-CALL", f"unknown function {f.id!r}",
                         _close(f.id, list(REGISTRY)) or "see the DSL reference for primitives")  # fmt: skip
        elif isinstance(f, ast.Attribute):
            self.expr(f)
        else:
            self.add(e, "E-CALL", "only primitives can be called, by name")
            self.expr(f)
        colour_ok = prim is not None and any(p.kind == "colour" for p in prim.params)
        for a in e.args:
            if isinstance(a, ast.Starred):
                self.add(a, "E-ARGS", "`*args` is not allowed", "pass arguments one by one")
                continue
            self.expr(a, string_ok=colour_ok)
        for kw in e.keywords:
            if kw.arg is None:
                self.add(kw.value, "E-ARGS", "`**kwargs` is not allowed")
                continue
            self.expr(kw.value, string_ok=colour_ok)
        if prim is not None:
            self._arity(e, prim)

    def _arity(self, e: ast.Call, prim) -> None:
        params = prim.params
        variadic = any(p.variadic for p in params)
        positional = [p for p in params if not p.variadic]
        n = len(e.args)
        sig = prim.signature
        if not variadic and n > len(positional):
            self.add(e, "E-ARGS", f"{prim.name}() takes at most {len(positional)} arguments, "
                     f"got {n}", sig)  # fmt: skip
            return
        if variadic and n < prim.min_args:
            self.add(e, "E-ARGS", f"{prim.name}() needs at least {prim.min_args} arguments", sig)
            return
        given = {p.name for p in positional[:n]}
        for kw in e.keywords:
            if kw.arg is None:
                continue
            if kw.arg not in {p.name for p in positional}:
                self.add(kw, "E-ARGS", f"{prim.name}() has no argument {kw.arg!r}", sig)
            elif kw.arg in given:
                self.add(kw, "E-ARGS", f"{prim.name}() got {kw.arg!r} twice", sig)
            given.add(kw.arg)
        missing = [p.name for p in positional if p.required and p.name not in given]
        if missing:
            self.add(e, "E-ARGS", f"{prim.name}() is missing {', '.join(missing)}", sig)


def check_function(
    fn: ast.FunctionDef, inputs: Sequence[str], constants: Mapping[str, object], limits: Limits
) -> list[DSLError]:
    """All grammar errors of one parsed program (empty list when it is allowed)."""
    return Checker(fn, inputs, list(constants), limits).check()
