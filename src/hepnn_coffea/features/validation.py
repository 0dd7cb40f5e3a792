"""Parse-time checks of config expressions against :mod:`hepnn_coffea.features.allowlist`.

:func:`check` rejects, before any data is read, everything an expression could use
to reach the file system, the interpreter or unbounded memory: calls other than
allowed module functions, helpers and methods of values; module members outside
the allow-list (``np.save``, ``np.lib``, ``ak.to_parquet``, ...); dunder, private and
I/O-like attributes; string constants other than dtype names and field subscripts;
arithmetic on sequence literals (``'a' * n``, ``[0] * n``, ``'%s' % x``); huge
constant exponents and size arguments. :func:`rewrite` then routes every
operator and call through the run-time guards of :mod:`hepnn_coffea.features.guards`.
"""

from __future__ import annotations

import ast
from typing import Any

from hepnn_coffea.features import allowlist as al

_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Attribute,
    ast.Constant,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.List,
    ast.keyword,
    ast.IfExp,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)

#: names of the run-time guards (users cannot write names starting with ``__``)
BINOP, COMPARE, CALL = "__hepnn_binop", "__hepnn_compare", "__hepnn_call"


class ExpressionError(ValueError):
    """An expression is malformed, not allowed, or failed to evaluate; the message names it."""


#: deepest accepted nesting of the syntax tree (the shipped configs stay below 15)
MAX_DEPTH = 100


def check(tree: ast.Expression, source: str) -> None:
    """Raise :class:`ExpressionError` naming the first construct of ``tree`` that is not allowed.

    Nodes are checked children first (``np.lib.format.open_memmap`` is reported as ``np.lib``).
    """
    parents: dict[int, ast.AST] = {}
    order: list[ast.AST] = []
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:  # iterative pre-order (no recursion on deep trees), reversed below
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(
                f"expression {source[:60]!r}: nesting deeper than {MAX_DEPTH} is not allowed"
            )
        order.append(node)
        children = list(ast.iter_child_nodes(node))
        for child in children:
            parents[id(child)] = node
        stack.extend((child, depth + 1) for child in children)
    checker = _Checker(source, parents)
    for node in order:  # outermost first: the syntax (a lambda is reported as such)
        checker.syntax(node)
    for node in reversed(order):
        checker.visit_node(node)


class _Checker:
    def __init__(self, source: str, parents: dict[int, ast.AST]) -> None:
        self.source = source
        self.parents = parents

    def fail(self, what: str) -> None:
        raise ExpressionError(f"expression {self.source!r}: {what} (see docs/expressions.md)")

    def parent(self, node: ast.AST) -> ast.AST | None:
        return self.parents.get(id(node))

    def syntax(self, node: ast.AST) -> None:
        if not isinstance(node, _ALLOWED_NODES):
            self.fail(f"'{type(node).__name__}' is not allowed")

    def visit_keyword(self, node: ast.keyword) -> None:
        call = ast.unparse(self.parent(node).func)  # type: ignore[union-attr]
        if node.arg is None:
            self.fail(f"'**' arguments are not allowed (in a call of {call!r})")
        if node.arg in al.FORBIDDEN_KEYWORDS:
            self.fail(f"keyword '{node.arg}=' is not allowed (in a call of {call!r})")

    def visit_node(self, node: ast.AST) -> None:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is not None:
            method(node)

    # ------------------------------------------------------------------ names
    def visit_Name(self, node: ast.Name) -> None:
        parent = self.parent(node)
        if node.id.startswith("__"):
            self.fail(f"name '{node.id}' is not allowed")
        if node.id in al.RESERVED_NAMES:
            self.fail(f"name '{node.id}' is not allowed (reserved)")
        if node.id in al.MODULES and not (isinstance(parent, ast.Attribute) and parent.value is node):
            self.fail(f"module '{node.id}' is not allowed as a value: use {node.id}.<allowed name>")
        if node.id in al.HELPER_FUNCTIONS and not (isinstance(parent, ast.Call) and parent.func is node):
            self.fail(f"helper '{node.id}' is not allowed as a value: call it")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value, attr = node.value, node.attr
        if attr.startswith("_"):
            self.fail(f"attribute '{attr}' is not allowed")
        if isinstance(value, ast.Name) and value.id in al.MODULES:
            found = al.member(value.id, attr)
            if found is None:
                self.fail(f"'{value.id}.{attr}' is not allowed (not in the allow-list)")
            parent = self.parent(node)
            if isinstance(parent, ast.Attribute):
                self.fail(f"attribute '{parent.attr}' of '{value.id}.{attr}' is not allowed")
            called = isinstance(parent, ast.Call) and parent.func is node
            if found.kind in ("function", "ufunc") and not called:
                self.fail(f"'{value.id}.{attr}' is not allowed as a value: call it")
            return
        if isinstance(value, ast.Constant):
            self.fail(f"attribute '{attr}' of the constant {value.value!r} is not allowed")
        if not al.value_attr_allowed(attr):
            self.fail(f"attribute '{attr}' is not allowed")

    # ------------------------------------------------------------------ calls
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in al.MODULES
        ):
            found = al.member(func.value.id, func.attr)
            if found is None or found.kind == "constant":
                self.fail(f"'{func.value.id}.{func.attr}' is not allowed as a function")
            label = f"{func.value.id}.{func.attr}"
            if found.kind != "ufunc":
                self._arity(node, label, found.max_args)
            elif found.max_args < len(node.args) <= found.max_args + found.outputs:  # more: numpy's TypeError
                self.fail(
                    f"'{label}' with {len(node.args)} positional arguments is not allowed "
                    f"(argument {found.max_args + 1} would be an output array)"
                )
            self._size_argument(node, found.label, label)
        elif isinstance(func, ast.Name) and func.id in al.HELPER_FUNCTIONS:
            self._arity(node, func.id, al.HELPER_FUNCTIONS[func.id])
        elif isinstance(func, ast.Attribute):  # a method of a value (checked by visit_Attribute)
            self._arity(node, f".{func.attr}", al.METHOD_MAX_POSITIONAL.get(func.attr))
        else:
            self.fail(
                f"calling {ast.unparse(func)!r} is not allowed: only allowed functions and methods of values"
            )

    def _arity(self, node: ast.Call, label: str, most: int | None) -> None:
        if most is not None and len(node.args) > most:
            self.fail(f"'{label}' with {len(node.args)} positional arguments is not allowed (at most {most})")

    def _size_argument(self, node: ast.Call, key: str, label: str) -> None:
        if key not in al.SIZE_ARGUMENTS:
            return
        position, keyword, limit = al.SIZE_ARGUMENTS[key]
        args = [node.args[position]] if len(node.args) > position else []
        args += [kw.value for kw in node.keywords if kw.arg == keyword]
        for arg in args:
            value = fold(arg, self)
            if isinstance(value, (int, float)) and value > limit:
                self.fail(f"'{label}' with {keyword}={value:.3g} is not allowed (at most {limit:,})")

    # -------------------------------------------------------------- constants
    def visit_Constant(self, node: ast.Constant) -> None:
        value, parent = node.value, self.parent(node)
        if isinstance(value, bytes):
            self.fail("bytes constants are not allowed")
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > al.MAX_INT_BITS:
            self.fail(f"an integer constant of {value.bit_length()} bits is not allowed")
        if value is None and self._in_subscript(node):
            self.fail("None (np.newaxis) in a subscript is not allowed")
        reported_by_parent = isinstance(parent, (ast.Attribute, ast.BinOp)) or (
            isinstance(parent, ast.keyword) and parent.arg in al.FORBIDDEN_KEYWORDS
        )
        if isinstance(value, str) and not reported_by_parent:
            as_argument = (
                isinstance(parent, ast.Call) and node in parent.args or isinstance(parent, ast.keyword)
            )
            if as_argument and value in al.DTYPE_NAMES:
                return
            if self._in_subscript(node) and not value.startswith("_") and len(value) <= 200:
                return
            self.fail(
                f"the string constant {value[:40]!r} is not allowed here "
                "(only dtype names and field subscripts)"
            )

    def _in_subscript(self, node: ast.AST) -> bool:
        parent = self.parent(node)
        if isinstance(parent, (ast.Tuple, ast.List)):
            node, parent = parent, self.parent(parent)
        return isinstance(parent, ast.Subscript) and parent.slice is node

    # -------------------------------------------------------------- operators
    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.MatMult):
            self.fail("the operator '@' is not allowed")
        for side in (node.left, node.right):
            if (
                isinstance(side, (ast.List, ast.Tuple))
                or isinstance(side, ast.Constant)
                and isinstance(side.value, (str, bytes))
            ):
                self.fail(f"arithmetic on the sequence {ast.unparse(side)[:40]!r} is not allowed")
        if isinstance(node.op, (ast.Pow, ast.LShift, ast.RShift)):
            exponent = fold(node.right, self)
            if isinstance(exponent, (int, float)) and abs(exponent) > al.MAX_CONST_EXPONENT:
                self.fail(
                    f"the exponent/shift {exponent:.3g} is not allowed (at most {al.MAX_CONST_EXPONENT})"
                )
        fold(node, self)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        index = node.slice
        if isinstance(index, ast.Tuple):
            simple = (ast.Slice, ast.Constant)
            arrays = [e for e in index.elts if not isinstance(e, simple) and fold(e, self) is None]
            if len(arrays) > 1:
                self.fail(
                    "indexing with more than one array at a time is not allowed: index one axis at a time"
                )


_FOLD_OPS: dict[type, Any] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
    ast.Pow: lambda a, b: a**b,
    ast.LShift: lambda a, b: a << b,
    ast.RShift: lambda a, b: a >> b,
    ast.BitAnd: lambda a, b: a & b,
    ast.BitOr: lambda a, b: a | b,
    ast.BitXor: lambda a, b: a ^ b,
}


def fold(node: ast.AST, checker: Any) -> int | float | None:
    """The value of a constant numeric sub-expression (None if not constant), refusing huge results."""
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = fold(node.operand, checker)
        return None if value is None else (-value if isinstance(node.op, ast.USub) else value)
    if not isinstance(node, ast.BinOp) or type(node.op) not in _FOLD_OPS:
        return None
    left, right = fold(node.left, checker), fold(node.right, checker)
    if left is None or right is None:
        return None
    big = isinstance(left, int) and isinstance(right, int)
    if big and isinstance(node.op, ast.Pow) and right > 0 and left.bit_length() * right > al.MAX_INT_BITS:
        checker.fail(
            f"the constant {ast.unparse(node)[:40]!r} is too large (more than {al.MAX_INT_BITS} bits)"
        )
    if big and isinstance(node.op, ast.LShift) and 0 < right and left.bit_length() + right > al.MAX_INT_BITS:
        checker.fail(
            f"the constant {ast.unparse(node)[:40]!r} is too large (more than {al.MAX_INT_BITS} bits)"
        )
    if isinstance(node.op, (ast.Pow, ast.LShift, ast.RShift)) and abs(right) > al.MAX_CONST_EXPONENT:
        checker.fail(f"the exponent/shift {right:.3g} is not allowed (at most {al.MAX_CONST_EXPONENT})")
    try:
        value = _FOLD_OPS[type(node.op)](left, right)
    except (ArithmeticError, ValueError):
        return None
    if isinstance(value, int) and value.bit_length() > al.MAX_INT_BITS:
        checker.fail(
            f"the constant {ast.unparse(node)[:40]!r} is too large (more than {al.MAX_INT_BITS} bits)"
        )
    return value if isinstance(value, (int, float)) else None


class _Guard(ast.NodeTransformer):
    """Route operators and calls through the run-time guards (:mod:`hepnn_coffea.features.guards`)."""

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        op = ast.Constant(type(node.op).__name__)
        return ast.Call(ast.Name(BINOP, ast.Load()), [op, node.left, node.right], [])

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        operands = [node.left, *node.comparators]
        pairs = [
            ast.Call(ast.Name(COMPARE, ast.Load()), [ast.Constant(type(op).__name__), left, right], [])
            for op, left, right in zip(node.ops, operands[:-1], operands[1:])
        ]
        return pairs[0] if len(pairs) == 1 else ast.BoolOp(ast.And(), pairs)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        return ast.Call(ast.Name(CALL, ast.Load()), [node.func, *node.args], node.keywords)


def rewrite(tree: ast.Expression) -> ast.Expression:
    """``tree`` with every operator and call routed through the run-time guards."""
    return ast.fix_missing_locations(_Guard().visit(tree))
