"""Run-time side of the expression sandbox.

Expressions run with no builtins, in namespaces ``np``/``ak``/``math`` that hold
only the allow-listed members (:func:`namespaces`), and every operator and call
goes through a guard (see :func:`hepnn_coffea.features.validation.rewrite`) that
refuses, before computing:

- arithmetic on sequences (``np.where(c) * n`` would repeat a tuple);
- Python integers growing past :data:`~hepnn_coffea.features.allowlist.MAX_INT_BITS`;
- broadcasting of regular arrays (numpy, regular awkward dimensions) into an
  output larger than its largest input (an outer product ``a[:, None] * b``);
- ``ak.pad_none`` / ``np.bincount`` asking for more elements than allowed.

Refusals raise :class:`LimitError`, which the variable table reports with the
variable and the input file.
"""

from __future__ import annotations

import math
import operator
import types
from collections.abc import Callable
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.features import allowlist as al
from hepnn_coffea.features.validation import BINOP, CALL, COMPARE


class LimitError(ValueError):
    """An expression asked for more than the sandbox allows (size, integer growth, sequences)."""


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "Add": operator.add,
    "Sub": operator.sub,
    "Mult": operator.mul,
    "Div": operator.truediv,
    "FloorDiv": operator.floordiv,
    "Mod": operator.mod,
    "Pow": operator.pow,
    "LShift": operator.lshift,
    "RShift": operator.rshift,
    "BitAnd": operator.and_,
    "BitOr": operator.or_,
    "BitXor": operator.xor,
}
_COMPARES: dict[str, Callable[[Any, Any], Any]] = {
    "Eq": operator.eq,
    "NotEq": operator.ne,
    "Lt": operator.lt,
    "LtE": operator.le,
    "Gt": operator.gt,
    "GtE": operator.ge,
    "Is": operator.is_,
    "IsNot": operator.is_not,
    "In": lambda a, b: a in b,
    "NotIn": lambda a, b: a not in b,
}
_SEQUENCES = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_VAR = object()  # shape marker: var-length lists (awkward broadcasts those per entry, bounded)


def _int_growth(op: str, a: Any, b: Any) -> None:
    if not (isinstance(a, int) and isinstance(b, int)):
        return
    bits = {
        "Pow": a.bit_length() * b if b > 0 else 0,
        "LShift": a.bit_length() + b,
        "Mult": a.bit_length() + b.bit_length(),
    }.get(op, 0)
    if bits > al.MAX_INT_BITS:
        raise LimitError(f"the integer result of {op} would have ~{bits} bits (at most {al.MAX_INT_BITS})")


def _shape(value: Any) -> Any:
    """Regular shape of an array, :data:`_VAR` for var-length lists, None for scalars/records/unknown."""
    if isinstance(value, np.ndarray):
        return value.shape
    if not isinstance(value, ak.Array) or ak.backend(value) == "typetracer":
        return None
    layout = value.layout
    if not layout.purelist_isregular:
        return _VAR
    shape, content = [len(layout)], value.type.content
    while True:
        if isinstance(content, ak.types.OptionType):
            content = content.content
        elif isinstance(content, ak.types.RegularType):
            shape.append(content.size)
            content = content.content
        else:
            return tuple(shape)


def check_broadcast(values: list[Any], what: str) -> None:
    """Refuse broadcasting regular arrays into an output larger than the largest input."""
    shapes = []
    for value in values:
        shape = _shape(value)
        if shape is _VAR:
            return
        if shape is not None:
            shapes.append(shape)
    if len(shapes) < 2:
        return
    try:
        out = np.broadcast_shapes(*shapes)
    except ValueError:
        return  # incompatible: the operation raises its own error
    largest = max(math.prod(s) for s in shapes)
    if math.prod(out) > largest:
        raise LimitError(f"{what} would broadcast shapes {shapes} to {out}: more elements than any input")


def binop(op: str, a: Any, b: Any) -> Any:
    """``a <op> b`` after the sequence, integer-growth and broadcast checks."""
    if isinstance(a, _SEQUENCES) or isinstance(b, _SEQUENCES):
        raise LimitError(f"arithmetic ({op}) on {type(a).__name__} and {type(b).__name__} is not allowed")
    _int_growth(op, a, b)
    check_broadcast([a, b], f"operator {op}")
    return _BINOPS[op](a, b)


def compare(op: str, a: Any, b: Any) -> Any:
    """``a <op> b`` (a comparison) after the broadcast check."""
    check_broadcast([a, b], f"comparison {op}")
    return _COMPARES[op](a, b)


def call(func: Any, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` after the broadcast check over the array arguments (and ``self``)."""
    values = [*args, *kwargs.values()]
    values += [v for arg in args if isinstance(arg, (list, tuple)) for v in arg]
    owner = getattr(func, "__self__", None)
    if isinstance(owner, (np.ndarray, ak.Array)):
        values.append(owner)
    check_broadcast(values, f"calling {getattr(func, '__name__', 'a function')}")
    return func(*args, **kwargs)


def pad_none(array: Any, target: Any, axis: int = 1, **kwargs: Any) -> Any:
    """``ak.pad_none`` with ``target`` and the padded size bounded."""
    size = int(target)
    if size > al.MAX_PAD_TARGET:
        raise LimitError(f"ak.pad_none target {size} is larger than {al.MAX_PAD_TARGET}")
    if ak.backend(array) != "typetracer" and axis != 0:
        lists = int(ak.count(ak.num(array, axis=axis), axis=None))
        if lists * size > al.MAX_FREE_ELEMENTS:
            raise LimitError(
                f"ak.pad_none to {size} would make {lists * size} elements (at most {al.MAX_FREE_ELEMENTS})"
            )
    return ak.pad_none(array, size, axis, **kwargs)


def bincount(x: Any, weights: Any = None, minlength: Any = 0) -> np.ndarray:
    """``np.bincount`` with the number of bins bounded by max(MAX_FREE_ELEMENTS, 16 x len(x))."""
    values = np.asarray(x)
    bins = max(int(minlength), int(values.max()) + 1 if values.size else 0)
    limit = max(al.MAX_FREE_ELEMENTS, 16 * values.size)
    if bins > limit:
        raise LimitError(f"np.bincount would make {bins} bins (at most {limit})")
    return np.bincount(values, weights, int(minlength))


_WRAPPED = {("awkward", "pad_none"): pad_none, ("numpy", "bincount"): bincount}
_MODULES = {"numpy": np, "awkward": ak, "math": math}


def _namespace(module: str) -> types.SimpleNamespace:
    real = _MODULES[module]
    found = {n: _WRAPPED.get((module, n)) or getattr(real, n) for n in al.members(module) if hasattr(real, n)}
    return types.SimpleNamespace(**found)


def namespaces() -> dict[str, Any]:
    """The global names of an expression: restricted modules and the guards (helpers are added by the
    caller)."""
    spaces = {m: _namespace(m) for m in ("numpy", "awkward", "math")}
    out: dict[str, Any] = {alias: spaces[module] for alias, module in al.MODULES.items()}
    out.update({BINOP: binop, COMPARE: compare, CALL: call})
    return out
