"""The compiler: a checked program AST -> a tree of closures over jnp ops -> a pure function.

The program text is never `eval`ed or `exec`ed. `check_function` first refuses everything outside
the allow-list; then each allowed node becomes a small Python closure, and calling the root
closure on a dict of arrays traces exactly the jnp ops the program describes. Values are either
*static* (Python numbers and tuples: literals and task constants, folded at trace time) or
*traced* (jax arrays that depend on `obs`).

`if`/`elif`/`else` are compiled to `jnp.where`: both branches are traced, and a per-path "has
returned" flag selects the value of the first `return` reached, as Python would.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from car_jax.dsl import lazy
from car_jax.dsl.errors import DSLCompileError, DSLError
from car_jax.dsl.grammar import check_function, parse_source, split_program
from car_jax.dsl.limits import DEFAULT_LIMITS, Limits
from car_jax.dsl.registry import REGISTRY, ArgumentError, Primitive

Value = Any  # bool | int | float | tuple | jax.Array
Env = dict[str, Any]


class _Fail(Exception):
    """A trace-time problem at one node; converted to a DSLError by the compiler."""

    def __init__(self, node: ast.AST, code: str, message: str, hint: str = ""):
        super().__init__(message)
        self.node, self.code, self.message, self.hint = node, code, message, hint


class _Unbound:
    """Marks a local that is not assigned on every path reaching a use."""


UNBOUND = _Unbound()


@dataclass
class _Mismatch:
    """A local whose if/else branches assigned values that cannot be merged."""

    message: str


@dataclass
class _State:
    env: Env
    done: Any  # False | True | traced bool scalar: "a return has been reached"
    ret: Any = None


# --- value helpers ------------------------------------------------------------------------------
def _is_scalar_static(v: Value) -> bool:
    return isinstance(v, bool | int | float) and not isinstance(v, np.generic)


def _is_static(v: Value) -> bool:
    if isinstance(v, tuple):
        return all(_is_static(x) for x in v)
    return _is_scalar_static(v)


def _shape(v: Value) -> tuple[int, ...]:
    if _is_scalar_static(v):
        return ()
    if isinstance(v, tuple):
        return (len(v), *(_shape(v[0]) if v else ()))
    return tuple(jnp.shape(v))


def _arr(v: Value, node: ast.AST) -> Value:
    """Make `v` usable by jnp: tuples become arrays, lazy frames are drawn; scalars stay."""
    if lazy.is_lazy(v):
        return v.draw()
    if isinstance(v, tuple):
        try:
            if _is_static(v):
                return jnp.asarray(v)
            return jnp.stack([jnp.asarray(_arr(x, node)) for x in v])
        except (TypeError, ValueError) as err:
            raise _Fail(node, "E-TYPE", f"this tuple cannot be used as an array: {err}") from None
    if isinstance(v, _Unbound | _Mismatch):
        raise _Fail(node, "E-NAME", "a local name is used where it may be unassigned")
    return v


def _num(v: Value) -> Value:
    """An arithmetic operand: bools count as 0/1 and narrow or unsigned ints widen to int32.

    As in Python, `tile - 10` is negative for a uint8 tile of 3 (jnp would wrap it to 249).
    """
    if isinstance(v, bool):
        return int(v)
    if hasattr(v, "dtype"):
        if v.dtype == jnp.bool_:
            return v.astype(jnp.int32)
        # NOTE: dtype promotion: uint8/int8/int16/uint16/uint32 -> int32 so no arithmetic wraps.
        if jnp.issubdtype(v.dtype, jnp.integer) and (
            v.dtype.itemsize < 4 or jnp.issubdtype(v.dtype, jnp.unsignedinteger)
        ):
            return v.astype(jnp.int32)
    return v


def _check_static(v: Value, node: ast.AST, limits: Limits) -> Value:
    if isinstance(v, complex):
        raise _Fail(node, "E-VALUE", "this constant expression has no real value")
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > limits.max_int**2:
        raise _Fail(node, "E-LIMIT-INT", "this constant expression is out of range")
    return v


def _describe(v: Value) -> str:
    if _is_static(v):
        return f"the constant {v!r}"
    if lazy.is_lazy(v):
        return f"an array of shape {v.shape} and dtype {v.dtype}"
    return f"an array of shape {tuple(jnp.shape(v))} and dtype {jnp.asarray(v).dtype}"


_ARITH = {
    ast.Add: (operator.add, jnp.add),
    ast.Sub: (operator.sub, jnp.subtract),
    ast.Mult: (operator.mul, jnp.multiply),
    ast.Div: (operator.truediv, jnp.true_divide),
    ast.FloorDiv: (operator.floordiv, jnp.floor_divide),
    ast.Mod: (operator.mod, jnp.mod),
    ast.Pow: (operator.pow, jnp.power),
}
_BITS = {
    ast.BitAnd: (operator.and_, jnp.bitwise_and),
    ast.BitOr: (operator.or_, jnp.bitwise_or),
    ast.BitXor: (operator.xor, jnp.bitwise_xor),
}
_CMP = {
    ast.Eq: (operator.eq, jnp.equal),
    ast.NotEq: (operator.ne, jnp.not_equal),
    ast.Lt: (operator.lt, jnp.less),
    ast.LtE: (operator.le, jnp.less_equal),
    ast.Gt: (operator.gt, jnp.greater),
    ast.GtE: (operator.ge, jnp.greater_equal),
}
_SYM = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
    ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Eq: "==",
    ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
}  # fmt: skip


class _Builder:
    """Turns checked AST nodes into closures; one builder per program."""

    def __init__(self, constants: Mapping[str, Value], limits: Limits, local_names: set[str]):
        self.constants = constants
        self.limits = limits
        self.local_names = local_names

    # --- operators (run at trace time) ----------------------------------------------------------
    def binop(self, node: ast.AST, op: ast.operator, a: Value, b: Value) -> Value:
        """Apply a binary operator to static or traced values."""
        kind = type(op)
        py, jop = (_ARITH | _BITS)[kind]
        if _is_scalar_static(a) and _is_scalar_static(b):
            if kind in _BITS and (isinstance(a, float) or isinstance(b, float)):
                raise _Fail(node, "E-TYPE", f"`{_SYM[kind]}` needs integers or booleans")
            try:
                return _check_static(py(a, b), node, self.limits)
            except (ArithmeticError, ValueError, TypeError) as err:
                raise _Fail(node, "E-VALUE", f"this constant expression fails: {err}") from None
        a, b = _arr(a, node), _arr(b, node)
        if kind in _ARITH:
            a, b = _num(a), _num(b)
        else:
            for v in (a, b):
                if jnp.issubdtype(jnp.result_type(v), jnp.floating):
                    raise _Fail(node, "E-TYPE", f"`{_SYM[kind]}` needs integers or booleans, "
                                f"got {_describe(v)}", "use and/or/not on conditions")  # fmt: skip
        try:
            return jop(a, b)
        except (TypeError, ValueError) as err:
            raise _Fail(node, "E-TYPE", f"`{_SYM[kind]}` cannot combine {_describe(a)} and "
                        f"{_describe(b)}: {_first_line(err)}") from None  # fmt: skip

    def compare(self, node: ast.AST, op: ast.cmpop, a: Value, b: Value) -> Value:
        """Apply one comparison (including `in` / `not in`)."""
        if isinstance(op, ast.In | ast.NotIn):
            r = self.contains(node, a, b)
            if isinstance(op, ast.NotIn):
                return (not r) if isinstance(r, bool) else jnp.logical_not(r)
            return r
        py, jop = _CMP[type(op)]
        if (
            _is_static(a)
            and _is_static(b)
            and (
                (_is_scalar_static(a) and _is_scalar_static(b))
                or isinstance(op, ast.Eq | ast.NotEq)
            )
        ):
            return bool(py(a, b))
        try:
            return jop(_arr(a, node), _arr(b, node))
        except (TypeError, ValueError) as err:
            raise _Fail(node, "E-TYPE", f"`{_SYM[type(op)]}` cannot compare {_describe(a)} and "
                        f"{_describe(b)}: {_first_line(err)}") from None  # fmt: skip

    def contains(self, node: ast.AST, item: Value, seq: Value) -> Value:
        """`item in seq`: seq a tuple (of scalars or of vectors) or an array."""
        if isinstance(seq, tuple):
            result: Value = False
            for x in seq:
                eq = self.compare(node, ast.Eq(), item, x)
                if not isinstance(eq, bool) and jnp.shape(eq) != ():
                    eq = jnp.all(eq)
                result = self.boolop(node, ast.Or(), result, eq)
            return result
        if _is_scalar_static(seq):
            raise _Fail(node, "E-TYPE", "`in` needs a tuple or an array on the right")
        if _shape(item) != ():
            raise _Fail(node, "E-TYPE", "`x in array` needs a scalar x",
                        "for positions use a tuple of positions: `pos in ((1, 2), (3, 4))`")  # fmt: skip
        return jnp.any(jnp.asarray(_arr(seq, node)) == _arr(item, node))

    def cond(self, node: ast.AST, v: Value) -> Value:
        """A condition: a static bool, or a traced bool scalar."""
        if _is_scalar_static(v):
            return bool(v)
        if isinstance(v, tuple | _Unbound | _Mismatch):
            raise _Fail(node, "E-COND", "a tuple cannot be used as a condition",
                        "compare its items, or use all(...) / any(...)")  # fmt: skip
        if jnp.shape(v) != ():
            raise _Fail(node, "E-COND", f"a condition must be a scalar, got shape {jnp.shape(v)}",
                        "reduce it with all(...) or any(...)")  # fmt: skip
        return v if v.dtype == jnp.bool_ else v != 0

    def boolop(self, node: ast.AST, op: ast.boolop, a: Value, b: Value) -> Value:
        """`and` / `or` on two conditions (both traced: logical ops)."""
        a, b = self.cond(node, a), self.cond(node, b)
        if isinstance(a, bool) and isinstance(b, bool):
            return (a and b) if isinstance(op, ast.And) else (a or b)
        return jnp.logical_and(a, b) if isinstance(op, ast.And) else jnp.logical_or(a, b)

    def where(self, node: ast.AST, c: Value, a: Value, b: Value) -> Value:
        """Select `a` where `c` else `b` (c static: plain choice)."""
        if isinstance(c, bool):
            return a if c else b
        if a is b:
            return a
        if _is_static(a) and _is_static(b) and a == b and type(a) is type(b):
            return a
        try:
            return jnp.where(c, _arr(a, node), _arr(b, node))
        except (TypeError, ValueError) as err:
            raise _Fail(node, "E-TYPE", f"the branches give values that cannot be merged "
                        f"({_describe(a)} vs {_describe(b)}): {_first_line(err)}") from None  # fmt: skip

    # --- expressions ----------------------------------------------------------------------------
    def expr(self, e: ast.expr) -> Callable[[Env], Value]:
        """The closure computing expression `e` from the environment."""
        method = getattr(self, f"e_{type(e).__name__}", None)
        if method is None:  # the grammar check refuses these first; this is a second guard
            raise _Fail(e, "E-SYNTAX", f"{type(e).__name__} expressions are not supported")
        return method(e)

    def e_Constant(self, e: ast.Constant) -> Callable[[Env], Value]:
        v = e.value
        return lambda env: v

    def e_Name(self, e: ast.Name) -> Callable[[Env], Value]:
        name = e.id
        if name in self.local_names:

            def load(env: Env) -> Value:
                v = env.get(name, UNBOUND)
                if isinstance(v, _Unbound):
                    raise _Fail(e, "E-NAME", f"{name!r} is used before it is assigned on some path",
                                "assign it before the if/else, or in every branch")  # fmt: skip
                if isinstance(v, _Mismatch):
                    raise _Fail(e, "E-TYPE", f"{name!r}: {v.message}")
                return v

            return load
        if name in self.constants:
            v = self.constants[name]
            return lambda env: v
        raise _Fail(e, "E-NAME", f"unknown name {name!r}")

    def e_Attribute(self, e: ast.Attribute) -> Callable[[Env], Value]:
        attr = e.attr
        if not (isinstance(e.value, ast.Name) and e.value.id == "obs"):
            raise _Fail(e, "E-ATTR", f"the attribute {attr!r} is not allowed")

        def load(env: Env) -> Value:
            obs = env["obs"]
            if attr not in obs:
                raise _Fail(e, "E-INPUT", f"the observation has no input {attr!r}")
            return obs[attr]

        return load

    def e_UnaryOp(self, e: ast.UnaryOp) -> Callable[[Env], Value]:
        f = self.expr(e.operand)
        op = e.op

        def run(env: Env) -> Value:
            v = f(env)
            if isinstance(op, ast.Not):
                c = self.cond(e, v)
                return (not c) if isinstance(c, bool) else jnp.logical_not(c)
            if _is_scalar_static(v):
                if isinstance(op, ast.Invert):
                    if isinstance(v, float):
                        raise _Fail(e, "E-TYPE", "`~` needs an integer or a bool")
                    return (not v) if isinstance(v, bool) else ~v
                return -v if isinstance(op, ast.USub) else +v
            v = _arr(v, e)
            if isinstance(op, ast.Invert):
                if v.dtype == jnp.bool_:
                    return jnp.logical_not(v)
                if not jnp.issubdtype(v.dtype, jnp.integer):
                    raise _Fail(e, "E-TYPE", f"`~` needs integers or booleans, got {_describe(v)}")
                return jnp.bitwise_not(v)
            v = _num(v)
            return jnp.negative(v) if isinstance(op, ast.USub) else v

        return run

    def e_BinOp(self, e: ast.BinOp) -> Callable[[Env], Value]:
        fa, fb = self.expr(e.left), self.expr(e.right)
        return lambda env: self.binop(e, e.op, fa(env), fb(env))

    def e_BoolOp(self, e: ast.BoolOp) -> Callable[[Env], Value]:
        fs = [self.expr(v) for v in e.values]
        op = e.op

        def run(env: Env) -> Value:
            acc = self.cond(e.values[0], fs[0](env))
            for f, sub in zip(fs[1:], e.values[1:]):
                if isinstance(acc, bool) and acc == isinstance(op, ast.Or):
                    return acc  # static short-circuit, as in Python
                acc = self.boolop(sub, op, acc, f(env))
            return acc

        return run

    def e_Compare(self, e: ast.Compare) -> Callable[[Env], Value]:
        fs = [self.expr(e.left)] + [self.expr(c) for c in e.comparators]

        def run(env: Env) -> Value:
            vals = [f(env) for f in fs]
            acc: Value = True
            for i, op in enumerate(e.ops):
                r = self.compare(e, op, vals[i], vals[i + 1])
                if len(e.ops) == 1:
                    return r
                acc = self.boolop(e, ast.And(), acc, r)
            return acc

        return run

    def e_IfExp(self, e: ast.IfExp) -> Callable[[Env], Value]:
        ft, fa, fb = self.expr(e.test), self.expr(e.body), self.expr(e.orelse)

        def run(env: Env) -> Value:
            c = self.cond(e.test, ft(env))
            if isinstance(c, bool):
                return fa(env) if c else fb(env)
            return self.where(e, c, fa(env), fb(env))

        return run

    def e_Tuple(self, e: ast.Tuple | ast.List) -> Callable[[Env], Value]:
        fs = [self.expr(x) for x in e.elts]
        return lambda env: tuple(f(env) for f in fs)

    e_List = e_Tuple

    def e_Slice(self, e: ast.Slice) -> Callable[[Env], Value]:
        parts = [None if p is None else self.expr(p) for p in (e.lower, e.upper, e.step)]

        def run(env: Env) -> Value:
            vals = []
            for p in parts:
                v = None if p is None else p(env)
                if v is not None and not (isinstance(v, int) and not isinstance(v, bool)):
                    raise _Fail(e, "E-INDEX", "slice bounds must be integer constants",
                                "for a computed position index single cells: x[i] or x[i, j]")  # fmt: skip
                vals.append(v)
            return slice(*vals)

        return run

    def e_Subscript(self, e: ast.Subscript) -> Callable[[Env], Value]:
        fv = self.expr(e.value)
        if isinstance(e.slice, ast.Tuple):
            fis = [self.expr(x) for x in e.slice.elts]

            def fi(env: Env) -> Value:
                return tuple(self.index(e, f(env)) for f in fis)
        else:
            f1 = self.expr(e.slice)

            def fi(env: Env) -> Value:
                return self.index(e, f1(env))

        def run(env: Env) -> Value:
            v, i = fv(env), fi(env)
            if isinstance(v, lazy.LazyFrame):
                # Constant slices keep a sprite-grid frame lazy; anything else draws it.
                sub = v.sliced(i)
                if sub is not None:
                    return sub
            if isinstance(v, tuple) and isinstance(i, int):
                try:
                    return v[i]
                except IndexError:
                    raise _Fail(e, "E-INDEX", f"index {i} is out of range for a tuple of "
                                f"{len(v)} items") from None  # fmt: skip
            if _is_scalar_static(v):
                raise _Fail(e, "E-INDEX", f"the constant {v!r} cannot be indexed")
            try:
                return _arr(v, e)[i]
            except (IndexError, TypeError, ValueError) as err:
                raise _Fail(e, "E-INDEX", f"cannot index {_describe(v)} with this index: "
                            f"{_first_line(err)}") from None  # fmt: skip

        return run

    def index(self, node: ast.AST, i: Value) -> Value:
        """Check one index item: an int (static or traced), a constant slice or `...`."""
        if isinstance(i, slice) or i is Ellipsis:
            return i
        if isinstance(i, bool | float):
            raise _Fail(node, "E-INDEX", f"an index must be an integer, got {i!r}")
        if isinstance(i, int):
            return i
        if isinstance(i, tuple):
            raise _Fail(node, "E-INDEX", "a tuple cannot be an index item",
                        "write x[i, j] with separate integers")  # fmt: skip
        if not jnp.issubdtype(i.dtype, jnp.integer):
            hint = (
                "boolean masks would change the shape; use where(mask, x, 0), sum(...) or count(...)"
                if i.dtype == jnp.bool_
                else "convert with int(...)"
            )
            raise _Fail(node, "E-INDEX", f"an index must be an integer, got {_describe(i)}", hint)
        return i

    def e_Call(self, e: ast.Call) -> Callable[[Env], Value]:
        assert isinstance(e.func, ast.Name)
        prim = REGISTRY[e.func.id]
        fargs = [self.expr(a) for a in e.args]
        fkws = {kw.arg: self.expr(kw.value) for kw in e.keywords if kw.arg}
        params = [p for p in prim.params if not p.variadic]
        var = next((p for p in prim.params if p.variadic), None)

        def run(env: Env) -> Value:
            args = []
            for k, (f, a) in enumerate(zip(fargs, e.args)):
                param = params[k] if k < len(params) else var
                args.append(self.argument(a, prim, param, f(env)))
            kwargs = {}
            for kw in e.keywords:
                param = next(p for p in params if p.name == kw.arg)
                kwargs[kw.arg] = self.argument(kw.value, prim, param, fkws[kw.arg](env))
            if any(lazy.is_lazy(v) for v in (*args, *kwargs.values())):
                # A lazy frame or mask: answered from sprite tables where the primitive can be,
                # else drawn first (the same pixels the task's frame has).
                lazy_fn = lazy.LAZY_PRIMITIVES.get(prim.name)
                out = None if lazy_fn is None else lazy_fn(*args, **kwargs)
                if out is not None:
                    return out
                args = [lazy.materialize(v) for v in args]
                kwargs = {k: lazy.materialize(v) for k, v in kwargs.items()}
            try:
                return prim.fn(*args, **kwargs)
            except ArgumentError as err:
                raise _Fail(e, "E-ARGS", f"{prim.name}(): {err}", prim.signature) from None
            except (TypeError, ValueError, IndexError) as err:
                raise _Fail(e, "E-TYPE", f"{prim.name}() failed on these arguments: "
                            f"{_first_line(err)}", prim.signature) from None  # fmt: skip

        return run

    def argument(self, node: ast.AST, prim: Primitive, param, v: Value) -> Value:
        """Check and convert one argument by its declared kind."""
        where = f"{prim.name}() argument {param.name!r}"
        if isinstance(v, str) and param.kind != "colour":
            raise _Fail(node, "E-STRING", f"{where} cannot be a string")
        if param.kind == "const":
            if not _is_scalar_static(v):
                raise _Fail(node, "E-ARGS", f"{where} must be a compile-time number "
                            f"(a literal or a named constant), got {_describe(v)}", prim.signature)  # fmt: skip
            return v
        if param.kind == "colour":
            return self.colour(node, where, v)
        if not lazy.is_lazy(v):  # NOTE: lazy frames and masks stay lazy until the call
            v = _arr(v, node)
        if param.kind == "image":
            shape = jnp.shape(v)
            if len(shape) != 3 or shape[-1] != 3:
                raise _Fail(node, "E-ARGS", f"{where} must be an RGB frame of shape (H, W, 3), "
                            f"got shape {shape}", prim.signature)  # fmt: skip
        return v

    def colour(self, node: ast.AST, where: str, v: Value) -> tuple:
        """A colour argument: an RGB triple constant, or a colour name the task defines."""
        if isinstance(v, str):
            key = v.strip().upper().replace(" ", "_")
            for cand in (f"{key}_RGB", key):
                rgb = self.constants.get(cand)
                if isinstance(rgb, tuple) and len(rgb) == 3 and _is_static(rgb):
                    return rgb
            names = sorted(k[:-4].lower() for k in self.constants if k.endswith("_RGB"))
            raise _Fail(node, "E-ARGS", f"{where}: the task defines no colour {v!r}",
                        f"colours: {', '.join(names) or '(none)'}")  # fmt: skip
        if (
            isinstance(v, tuple)
            and len(v) == 3
            and all(_is_scalar_static(x) and not isinstance(x, bool) for x in v)
        ):
            return v
        raise _Fail(node, "E-ARGS", f"{where} must be an RGB triple constant such as YELLOW_RGB "
                    f"or a colour name, got {_describe(v)}")  # fmt: skip

    # --- statements -----------------------------------------------------------------------------
    def block(self, stmts: list[ast.stmt]) -> Callable[[_State], _State]:
        """The closure running a block of statements on a state."""
        fs = [self.stmt(s) for s in stmts]

        def run(st: _State) -> _State:
            for f in fs:
                if st.done is True:
                    break  # statically unreachable: not traced
                st = f(st)
            return st

        return run

    def stmt(self, s: ast.stmt) -> Callable[[_State], _State]:
        """The closure running one statement."""
        if isinstance(s, ast.Pass) or (
            isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
        ):
            return lambda st: st
        if isinstance(s, ast.Return):
            fv = self.expr(s.value)

            def ret(st: _State) -> _State:
                v = fv(st.env)
                if st.done is False:
                    return _State(st.env, True, v)
                return _State(st.env, True, self.where(s, st.done, st.ret, v))

            return ret
        if isinstance(s, ast.Assign | ast.AnnAssign):
            fv = self.expr(s.value)
            targets = s.targets if isinstance(s, ast.Assign) else [s.target]

            def assign(st: _State) -> _State:
                v = fv(st.env)
                env = dict(st.env)
                for t in targets:
                    self.bind(t, v, env)
                return _State(env, st.done, st.ret)

            return assign
        if isinstance(s, ast.AugAssign):
            fold = self.expr(ast.Name(id=s.target.id, ctx=ast.Load(), lineno=s.lineno,
                                      col_offset=s.col_offset))  # fmt: skip
            fv = self.expr(s.value)

            def aug(st: _State) -> _State:
                env = dict(st.env)
                env[s.target.id] = self.binop(s, s.op, fold(st.env), fv(st.env))
                return _State(env, st.done, st.ret)

            return aug
        if isinstance(s, ast.If):
            ft, fbody, felse = self.expr(s.test), self.block(s.body), self.block(s.orelse)

            def branch(st: _State) -> _State:
                c = self.cond(s.test, ft(st.env))
                if isinstance(c, bool):
                    return fbody(st) if c else felse(st)
                return self.merge(s, c, fbody(st), felse(st))

            return branch
        raise _Fail(s, "E-STMT", f"{type(s).__name__} statements are not supported")

    def bind(self, t: ast.AST, v: Value, env: Env) -> None:
        """Assign `v` to a name or unpack it into a tuple of names."""
        if isinstance(t, ast.Name):
            env[t.id] = v
            return
        n = len(t.elts)
        v = lazy.materialize(v)
        if isinstance(v, tuple):
            items = list(v)
        elif _is_scalar_static(v) or jnp.ndim(v) == 0:
            raise _Fail(t, "E-UNPACK", f"cannot unpack {_describe(v)} into {n} names")
        else:
            items = [v[i] for i in range(jnp.shape(v)[0])]
        if len(items) != n:
            raise _Fail(t, "E-UNPACK", f"cannot unpack {len(items)} items into {n} names",
                        f"the value has shape {_shape(v)}")  # fmt: skip
        for sub, item in zip(t.elts, items):
            self.bind(sub, item, env)

    def merge(self, node: ast.If, c: Value, a: _State, b: _State) -> _State:
        """Join the states after a traced if/else: locals and the return value via where."""
        if a.done is True and b.done is True:
            done: Value = True
        elif a.done is False and b.done is False:
            done = False
        else:
            done = jnp.where(c, a.done, b.done)
        if a.ret is None:
            ret = b.ret
        elif b.ret is None:
            ret = a.ret
        else:
            ret = self.where(node, c, a.ret, b.ret)
        env: Env = {}
        for k in dict.fromkeys([*a.env, *b.env]):
            va, vb = a.env.get(k, UNBOUND), b.env.get(k, UNBOUND)
            if a.done is True:
                env[k] = vb
            elif b.done is True:
                env[k] = va
            elif isinstance(va, _Unbound) or isinstance(vb, _Unbound):
                env[k] = UNBOUND
            elif isinstance(va, _Mismatch) or isinstance(vb, _Mismatch):
                env[k] = va if isinstance(va, _Mismatch) else vb
            else:
                try:
                    env[k] = self.where(node, c, va, vb)
                except _Fail as err:
                    env[k] = _Mismatch(f"assigned incompatible values in the branches ({err})")
        return _State(env, done, ret)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


# --- public API ---------------------------------------------------------------------------------
def normalize_inputs(inputs: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
    """An input spec (name -> (shape, dtype, doc, ...) / dict / ShapeDtypeStruct) as structs."""
    out = {}
    for name, field_ in inputs.items():
        if isinstance(field_, jax.ShapeDtypeStruct):
            shape, dtype = field_.shape, field_.dtype
        elif isinstance(field_, Mapping):
            shape, dtype = field_["shape"], field_["dtype"]
        else:
            shape, dtype = field_[0], field_[1]
        if not str(name).isidentifier() or str(name).startswith("__"):
            raise ValueError(f"input name {name!r} is not a valid identifier")
        out[str(name)] = jax.ShapeDtypeStruct(tuple(int(d) for d in shape), np.dtype(dtype))
    return out


def normalize_constants(constants: Mapping[str, Any] | None) -> dict[str, Value]:
    """Task constants as static Python values (lists become tuples); anything else is refused."""

    def conv(name: str, v: Any) -> Value:
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool | int | float):
            return v
        if isinstance(v, list | tuple | np.ndarray):
            return tuple(conv(name, x) for x in (v.tolist() if isinstance(v, np.ndarray) else v))
        raise ValueError(f"constant {name!r} must be a number or a tuple of numbers, got {v!r}")

    out = {}
    for name, v in (constants or {}).items():
        if not str(name).isidentifier() or str(name).startswith("__"):
            raise ValueError(f"constant name {name!r} is not a valid identifier")
        out[str(name)] = conv(name, v)
    return out


@dataclass(eq=False)
class CompiledProgram:
    """A checked, compiled reward program: `fn(obs) -> scalar` is pure jnp (jit/vmap it freely)."""

    name: str
    doc: str
    source: str
    inputs_used: tuple[str, ...]
    output: jax.ShapeDtypeStruct
    _run: Callable[[dict], Value] = field(repr=False)
    traces: int = 0  # how many times the closure tree was traced (once per jit compile)
    sprite_frames: dict[str, lazy.SheetTables] = field(default_factory=dict, repr=False)
    """Sprite-grid inputs: for these, `fn` also accepts the cell ids int32 [rows, cols]."""
    lazy_reads: bool = True
    """Read cell ids as lazy frames (False: draw the frame from them first)."""

    def fn(self, obs: Mapping[str, jax.Array]) -> jax.Array:
        """The program's value on one observation dict (extra keys are ignored).

        A sprite-grid input (`sprite_frames`) may be given as its cell ids instead of the drawn
        frame: the program then reads it as a lazy frame, with bit-identical results.
        """
        self.traces += 1  # NOTE: runs at trace time only; under jit this counts compiles
        # NOTE: inputs become jax arrays first, so an eager call (numpy inputs) has jit's
        # semantics too: a computed index out of range is clamped, never an IndexError.
        arrays = {k: jnp.asarray(v) for k, v in obs.items()}
        for name, tables in self.sprite_frames.items():
            v = arrays.get(name)
            if v is not None and v.shape == tables.grid_shape:
                # NOTE: shapes are static, so the lazy/drawn choice is made at trace time.
                ids = v.astype(jnp.int32)
                arrays[name] = lazy.LazyFrame(ids, tables) if self.lazy_reads else tables.draw(ids)
        return jnp.asarray(self._run(arrays))

    def __call__(self, obs: Mapping[str, jax.Array]) -> jax.Array:
        """Same as `fn`."""
        return self.fn(obs)


def _program_label(source: str) -> str:
    for line in source.splitlines():
        s = line.strip()
        if s.startswith("def ") and "(" in s:
            name = s[4 : s.index("(")].strip()
            if name.isidentifier():
                return name
    return "<program>"


def _build(
    fn_node: ast.FunctionDef, constants: dict[str, Value], limits: Limits, locals_: set[str]
) -> Callable[[Mapping[str, jax.Array]], Value]:
    builder = _Builder(constants, limits, locals_)
    body = builder.block(fn_node.body)

    def run(obs: Mapping[str, jax.Array]) -> Value:
        st = body(_State({"obs": obs}, False))
        if st.done is not True:
            raise _Fail(fn_node, "E-RETURN", "not every path ends in `return <value>`")
        return st.ret

    return run


def _to_error(program: str, err: _Fail) -> DSLError:
    return DSLError(
        program,
        getattr(err.node, "lineno", 1),
        getattr(err.node, "col_offset", 0),
        err.code,
        err.message,
        err.hint,
    )


def _sheet_tables(
    sprite_frames: Mapping[str, lazy.SpriteSheet] | None, structs: Mapping[str, Any]
) -> dict[str, lazy.SheetTables]:
    """Per-input sprite tables, checked against the input spec (a frame of the sheet's shape)."""
    out = {}
    for name, sheet in (sprite_frames or {}).items():
        if name not in structs:
            continue  # a mode's sheets may name inputs this spec does not declare
        tables = sheet if isinstance(sheet, lazy.SheetTables) else lazy.SheetTables(sheet)
        want = tables.frame_shape
        if tuple(structs[name].shape) != want or structs[name].dtype != np.uint8:
            raise ValueError(
                f"input {name!r} is declared {structs[name].shape} {structs[name].dtype}, but its "
                f"sprite sheet draws uint8 frames of shape {want}"
            )
        out[name] = tables
    return out


def _compile(
    source: str,
    inputs: Mapping[str, Any],
    constants: Mapping[str, Any] | None,
    limits: Limits,
    label: str | None,
    sprite_frames: Mapping[str, lazy.SpriteSheet] | None = None,
) -> tuple[CompiledProgram | None, list[DSLError]]:
    label = label or _program_label(source)
    module, errors = parse_source(source, label, limits)
    if module is None:
        return None, errors
    fn_node, errors = split_program(module, label)
    if fn_node is None or errors:
        return None, errors
    structs = normalize_inputs(inputs)
    consts = normalize_constants(constants)
    errors = check_function(fn_node, list(structs), consts, limits)
    if errors:
        return None, errors
    from car_jax.dsl.grammar import assigned_names

    name = fn_node.name
    try:
        run = _build(fn_node, consts, limits, set(assigned_names(fn_node)))
        out = jax.eval_shape(lambda obs: jnp.asarray(run(obs)), structs)
    except _Fail as err:
        return None, [_to_error(name, err)]
    except RecursionError:
        return None, [DSLError(name, fn_node.lineno, 0, "E-LIMIT-DEPTH",
                               "the program is nested too deeply to compile")]  # fmt: skip
    except Exception as err:  # NOTE: last guard, so a refused program is always a DSLError
        return None, [DSLError(name, fn_node.lineno, fn_node.col_offset, "E-TYPE",
                               f"the program cannot be traced: {_first_line(err)}")]  # fmt: skip
    if out.shape != () or not (
        out.dtype == np.bool_
        or np.issubdtype(out.dtype, np.integer)
        or np.issubdtype(out.dtype, np.floating)
    ):
        node = _last_return(fn_node)
        return None, [
            DSLError(
                name,
                node.lineno,
                node.col_offset,
                "E-OUTPUT",
                f"the program returns shape {out.shape} dtype {out.dtype}; a reward program "
                "must return a scalar bool or number",
                "reduce arrays with all(...), any(...), sum(...) or count(...)",
            )  # fmt: skip
        ]
    used = sorted(
        {
            n.attr
            for n in ast.walk(fn_node)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "obs"
        }
    )
    prog = CompiledProgram(name, ast.get_docstring(fn_node) or "", source, tuple(used), out, run)
    tables = _sheet_tables(sprite_frames, structs)
    if tables:
        # Trace the lazy path too: it must give the drawn path's output; if it cannot (a bug
        # here, never a program error), the program draws the frame from the cell ids instead.
        lazy_structs = dict(structs)
        for k, t in tables.items():
            lazy_structs[k] = jax.ShapeDtypeStruct(t.grid_shape, np.int32)
        prog.sprite_frames = tables
        try:
            lazy_out = jax.eval_shape(prog.fn, lazy_structs)
            ok = (lazy_out.shape, lazy_out.dtype) == (out.shape, out.dtype)
        except Exception:  # NOTE: any failure only turns the lazy path off
            ok = False
        prog.traces = 0
        prog.lazy_reads = ok
    return prog, []


def _last_return(fn_node: ast.FunctionDef) -> ast.AST:
    rets = [n for n in ast.walk(fn_node) if isinstance(n, ast.Return)]
    return max(rets, key=lambda n: (n.lineno, n.col_offset)) if rets else fn_node


def compile_program(
    source: str,
    inputs: Mapping[str, Any],
    constants: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    label: str | None = None,
    sprite_frames: Mapping[str, lazy.SpriteSheet] | None = None,
) -> CompiledProgram:
    """Check and compile one program against an input spec; raises DSLCompileError if refused.

    `sprite_frames` (input name -> sprite sheet, e.g. `task.sprite_frames(mode)`) lets the
    program take those inputs as cell ids and answer vision primitives without drawing.
    """
    prog, errors = _compile(source, inputs, constants, limits, label, sprite_frames)
    if errors:
        raise DSLCompileError(errors)
    assert prog is not None
    return prog


def check_program(
    source: str,
    inputs: Mapping[str, Any],
    constants: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    label: str | None = None,
) -> list[DSLError]:
    """Every error of one program (empty when it compiles); never raises DSLCompileError."""
    return _compile(source, inputs, constants, limits, label)[1]
