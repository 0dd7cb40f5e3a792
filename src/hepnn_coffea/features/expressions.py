"""Restricted evaluation of config expressions (``new_variables``, selections, labels).

Weaver-core hands these strings to a bare ``eval``. Here they are parsed once
with :mod:`ast` and checked, before any data is read, against the allow-list of
:mod:`hepnn_coffea.features.allowlist` (see :mod:`~hepnn_coffea.features.validation`
and ``docs/expressions.md``): data configs travel inside ONNX files, so an
expression is untrusted code. They run with no builtins, in restricted
``np``/``numpy``, ``ak``/``awkward`` and ``math`` namespaces, with every operator
and call guarded (:mod:`~hepnn_coffea.features.guards`). Names resolve to those
modules, the helpers below, or variables of the table.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from typing import Any

import awkward as ak
import numpy as np
import vector

from hepnn_coffea.features import guards
from hepnn_coffea.features.allowlist import MAX_EXPRESSION_LENGTH
from hepnn_coffea.features.validation import ExpressionError, check, rewrite

__all__ = [
    "HELPERS",
    "Expression",
    "ExpressionError",
    "VariableTable",
    "concat",
    "p4_from_ptetaphie",
    "p4_from_ptetaphim",
    "p4_from_pxpypze",
    "stack",
]


def _p4(fields: dict[str, Any]) -> ak.Array:
    return ak.zip(fields, with_name="Momentum4D", behavior=vector.backends.awkward.behavior)


def p4_from_pxpypze(px: Any, py: Any, pz: Any, energy: Any) -> ak.Array:
    """Lorentz vectors (``vector`` Momentum4D behaviour) from Cartesian components."""
    return _p4({"px": px, "py": py, "pz": pz, "E": energy})


def p4_from_ptetaphie(pt: Any, eta: Any, phi: Any, energy: Any) -> ak.Array:
    """Lorentz vectors from (pt, eta, phi, E)."""
    return _p4({"pt": pt, "eta": eta, "phi": phi, "E": energy})


def p4_from_ptetaphim(pt: Any, eta: Any, phi: Any, mass: Any) -> ak.Array:
    """Lorentz vectors from (pt, eta, phi, mass)."""
    return _p4({"pt": pt, "eta": eta, "phi": phi, "mass": mass})


def concat(*arrays: Any, axis: int = 1) -> ak.Array:
    """Concatenate jagged arrays per entry (weaver's ``_concat``)."""
    return ak.concatenate(arrays, axis=axis)


def stack(*arrays: Any, axis: int = 1) -> ak.Array:
    """Stack flat arrays into one column per entry (weaver's ``_stack``)."""
    return ak.concatenate([ak.unflatten(a, 1, axis=-1) for a in arrays], axis=axis)


#: Names usable in every expression; weaver's underscore helpers keep their names.
HELPERS: dict[str, Any] = {
    "np": np,
    "numpy": np,
    "ak": ak,
    "awkward": ak,
    "math": math,
    "_p4_from_pxpypze": p4_from_pxpypze,
    "_p4_from_ptetaphie": p4_from_ptetaphie,
    "_p4_from_ptetaphim": p4_from_ptetaphim,
    "_concat": concat,
    "_stack": stack,
}
#: the globals expressions run with: no builtins, restricted modules, guards, helpers
_SANDBOX: dict[str, Any] = {
    "__builtins__": {},
    **guards.namespaces(),
    **{k: v for k, v in HELPERS.items() if k.startswith("_")},
}


class Expression:
    """A validated, compiled expression; ``names`` lists the variables it reads."""

    def __init__(self, source: str) -> None:
        self.source = str(source).strip()
        if len(self.source) > MAX_EXPRESSION_LENGTH:
            raise ExpressionError(
                f"expression {self.source[:60]!r}...: {len(self.source)} characters is not allowed "
                f"(at most {MAX_EXPRESSION_LENGTH})"
            )
        try:
            tree = ast.parse(self.source, mode="eval")
        except SyntaxError as err:
            raise ExpressionError(f"invalid expression {self.source!r}: {err.msg}") from None
        except (RecursionError, MemoryError, ValueError) as err:
            raise ExpressionError(f"invalid expression {self.source[:60]!r}: {type(err).__name__}") from None
        check(tree, self.source)  # the allow-list, before anything runs
        names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
        self.names = list(dict.fromkeys(n for n in names if n not in HELPERS))
        self._code = compile(rewrite(tree), "<expression>", "eval")

    def evaluate(self, resolve: Callable[[str], Any]) -> Any:
        """Evaluate with ``resolve(name)`` supplying each variable."""
        scope = {name: resolve(name) for name in self.names}
        return eval(self._code, dict(_SANDBOX), scope)  # noqa: S307 - validated, guarded AST

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


class VariableTable(Mapping):
    """Lazily computed variables over a source of branches.

    Parameters
    ----------
    source
        Mapping-like (an awkward record array, NanoEvents, a dict) giving branches.
    definitions
        ``name -> expression`` for derived variables (new_variables, custom labels).
    where
        Text naming the input (a file) for error messages.
    """

    def __init__(self, source: Any, definitions: Mapping[str, str], where: str = "") -> None:
        self._source = source
        self._definitions = dict(definitions)
        self._compiled: dict[str, Expression] = {}
        self._cache: dict[str, Any] = {}
        self._active: list[str] = []
        self._fields = set(getattr(source, "fields", None) or list(source.keys()))
        self.where = where

    def __getitem__(self, name: str) -> Any:
        if name in self._cache:
            return self._cache[name]
        if name in self._definitions:
            if name in self._active:
                raise ExpressionError(f"circular definition: {' -> '.join(self._active + [name])}")
            self._active.append(name)
            try:
                value = self.evaluate(self._definitions[name], key=name)
            finally:
                self._active.pop()
        elif name in self._fields:
            value = self._source[name]
        else:
            needed_by = f" (needed by '{self._active[-1]}')" if self._active else ""
            raise KeyError(f"unknown branch or variable '{name}'{needed_by}{self._where_text()}")
        self._cache[name] = value
        return value

    def evaluate(self, expr: str | Expression, key: str = "") -> Any:
        """Evaluate an expression over this table, with errors naming ``key`` and the input."""
        if not isinstance(expr, Expression):
            expr = self._compiled.get(expr) or self._compiled.setdefault(expr, Expression(expr))
        try:
            return expr.evaluate(self.__getitem__)
        except (KeyError, ExpressionError):
            raise
        except Exception as err:
            label = f"'{key}' = " if key else ""
            raise ExpressionError(
                f"expression {label}{expr.source!r} failed{self._where_text()}: {type(err).__name__}: {err}"
            ) from err

    def _where_text(self) -> str:
        return f" in {self.where}" if self.where else ""

    def __iter__(self):
        return iter(self._fields | set(self._definitions))

    def __len__(self) -> int:
        return len(self._fields | set(self._definitions))
