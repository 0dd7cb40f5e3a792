"""What a config expression may call, read and write: the allow-list tables.

Data configs travel inside exported ONNX files, so an expression is untrusted
code. :mod:`hepnn_coffea.features.validation` checks every expression against
these tables when it is parsed; :mod:`hepnn_coffea.features.guards` builds the
restricted ``np``/``ak``/``math`` namespaces the expressions run in from the same
tables. ``docs/expressions.md`` embeds :func:`render_markdown` (a test keeps the
two equal; regenerate with ``python -m hepnn_coffea.features.allowlist``).
"""

from __future__ import annotations

import functools
import re
import types
from dataclasses import dataclass
from typing import Any

#: longest accepted expression (characters); the shipped configs stay below 300
MAX_EXPRESSION_LENGTH = 5000
#: largest constant exponent of ``**`` and shift of ``<<``/``>>``
MAX_CONST_EXPONENT = 1024
#: largest Python integer (bits) an expression may write or compute
MAX_INT_BITS = 4096
#: largest ``target`` of ``ak.pad_none``
MAX_PAD_TARGET = 100_000
#: most elements a size argument may ask for (``ak.pad_none`` in total, ``np.bincount``)
MAX_FREE_ELEMENTS = 2**26


def _arities(text: str) -> dict[str, Any]:
    """``"name:2 other:*"`` -> ``{"name": 2, "other": None}``.

    The number after a name is the most positional arguments; ``*``: any number.
    """
    pairs = (word.split(":") for word in text.split())
    return {name: None if most == "*" else int(most) for name, most in pairs}


#: numpy ufuncs (element-wise; no positional output: ``nin`` < arguments <= ``nin + nout`` is rejected,
#: more than ``nin + nout`` fails in numpy itself)
NUMPY_UFUNCS: tuple[str, ...] = tuple(
    """
    abs absolute fabs sign negative positive reciprocal add subtract multiply divide true_divide
    floor_divide mod fmod remainder power float_power square sqrt cbrt exp exp2 expm1 log log2 log10
    log1p logaddexp logaddexp2 sin cos tan arcsin arccos arctan arctan2 hypot sinh cosh tanh arcsinh
    arccosh arctanh deg2rad rad2deg degrees radians minimum maximum fmin fmax floor ceil rint trunc
    copysign heaviside isfinite isnan isinf signbit logical_and logical_or logical_not logical_xor
    bitwise_and bitwise_or bitwise_xor invert equal not_equal less less_equal greater greater_equal
    """.split()
)

#: other numpy functions: name -> most positional arguments (all before any ``out``/``shape``).
#: None of them allocates more than its inputs' size; ``np.bincount`` is bounded at run time.
NUMPY_FUNCTIONS: dict[str, int] = _arities(
    """
    where:3 clip:3 nan_to_num:1 round:2 ones_like:2 zeros_like:2 full_like:3 sum:3 prod:3 mean:3 std:3
    var:3 max:2 min:2 any:2 all:2 argmax:2 argmin:2 argsort:2 sort:2 cumsum:3 cumprod:3 count_nonzero:2
    nonzero:1 flatnonzero:1 concatenate:2 digitize:3 interp:6 isclose:5 take:3 bincount:3
    """
)

#: numpy scalar types, usable as dtype arguments and as conversions (``np.float32(x)``)
NUMPY_DTYPES: tuple[str, ...] = tuple(
    """
    bool_ int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64
    """.split()
)

#: numpy constants
NUMPY_CONSTANTS: tuple[str, ...] = ("pi", "e", "inf", "nan", "euler_gamma")

#: awkward functions: name -> most positional arguments
AWKWARD_FUNCTIONS: dict[str, int] = _arities(
    """
    num:2 count:2 count_nonzero:2 sum:2 prod:2 mean:3 std:4 var:4 max:2 min:2 ptp:2 any:2 all:2 argmax:2
    argmin:2 softmax:2 argsort:2 sort:2 ones_like:1 zeros_like:1 full_like:2 fill_none:3 is_none:2
    drop_none:2 nan_to_num:1 nan_to_none:1 firsts:2 singletons:2 flatten:2 ravel:1 unflatten:3
    local_index:2 run_lengths:1 where:3 mask:2 values_astype:2 zip:2 unzip:1 concatenate:2 pad_none:3
    to_numpy:1
    """
)

#: math functions: name -> most positional arguments (``None``: any number)
MATH_FUNCTIONS: dict[str, int | None] = _arities(
    """
    sqrt:1 exp:1 expm1:1 log:2 log2:1 log10:1 log1p:1 pow:2 sin:1 cos:1 tan:1 asin:1 acos:1 atan:1
    atan2:2 hypot:* sinh:1 cosh:1 tanh:1 asinh:1 acosh:1 atanh:1 fabs:1 floor:1 ceil:1 trunc:1
    copysign:2 fmod:2 degrees:1 radians:1 isfinite:1 isnan:1 isinf:1 erf:1 erfc:1
    """
)

#: math constants
MATH_CONSTANTS: tuple[str, ...] = ("pi", "e", "tau", "inf", "nan")

#: hepnn_coffea/weaver helper functions (see ``expressions.HELPERS``): name -> most positional arguments
HELPER_FUNCTIONS: dict[str, int | None] = {
    "_p4_from_pxpypze": 4,
    "_p4_from_ptetaphie": 4,
    "_p4_from_ptetaphim": 4,
    "_concat": None,
    "_stack": None,
}

#: arguments that size an output: function -> (position, keyword, largest constant value)
SIZE_ARGUMENTS: dict[str, tuple[int, str, int]] = {
    "ak.pad_none": (1, "target", MAX_PAD_TARGET),
    "np.bincount": (2, "minlength", MAX_FREE_ELEMENTS),
}

#: the only string constants allowed as call arguments
DTYPE_NAMES: tuple[str, ...] = tuple(
    """
    bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64
    """.split()
)

#: properties and methods of ``vector`` Lorentz vectors (``_p4_from_*``, coffea candidates)
VECTOR_ATTRS: tuple[str, ...] = tuple(
    """
    x y z t px py pz E e energy E2 e2 energy2 mass m M mass2 m2 M2 pt pt2 rho rho2 eta phi theta
    rapidity pseudorapidity p p2 mag mag2 costheta cottheta tau tau2 t2 beta gamma Et Et2 et et2 Mt Mt2
    mt mt2 transverse_energy transverse_energy2 transverse_mass transverse_mass2 azimuthal longitudinal
    temporal deltaR deltaR2 deltaphi deltaeta deltaangle deltaRapidityPhi deltaRapidityPhi2 dot cross
    add subtract scale scale2D scale3D scale4D unit neg2D neg3D neg4D equal not_equal isclose allclose
    is_parallel is_antiparallel is_perpendicular is_timelike is_spacelike is_lightlike boost boost_p4
    boost_beta3 boostX boostY boostZ boostCM_of boostCM_of_p4 boostCM_of_beta3 to_beta3 rotateX rotateY
    rotateZ rotate_axis rotate_euler rotate_nautical rotate_quaternion to_2D to_3D to_4D to_Vector2D
    to_Vector3D to_Vector4D to_xy to_rhophi to_xyz to_xyeta to_xytheta to_rhophiz to_rhophieta
    to_rhophitheta to_xyzt to_xyztau to_xyetat to_xyetatau to_xythetat to_xythetatau to_rhophizt
    to_rhophiztau to_rhophietat to_rhophietatau to_rhophithetat to_rhophithetatau to_pxpy to_pxpypz
    to_pxpyeta to_pxpytheta to_ptphi to_ptphipz to_ptphieta to_ptphitheta to_pxpypzenergy to_pxpypzmass
    to_pxpyetaenergy to_pxpyetamass to_pxpythetaenergy to_pxpythetamass to_ptphipzenergy to_ptphipzmass
    to_ptphietaenergy to_ptphietamass to_ptphithetaenergy to_ptphithetamass
    """.split()
)

#: read-only properties and pure methods of numpy arrays
ARRAY_ATTRS: tuple[str, ...] = ("astype", "real", "imag", "ndim", "shape", "size")

#: most positional arguments of a method call on a value (``ndarray.dot(b, out)``, ``astype(dtype, ...)``)
METHOD_MAX_POSITIONAL: dict[str, int] = {"dot": 1, "astype": 1}

#: keywords no call may pass: in-place output, free shapes, in-place conversion, behaviours, dispatch,
#: ``where=`` of ufuncs/reductions (leaves uninitialised memory in the output)
FORBIDDEN_KEYWORDS: tuple[str, ...] = tuple(
    """
    out shape copy behavior attrs with_name parameters like buffer order where
    """.split()
)

#: bare names that are never variables
RESERVED_NAMES: tuple[str, ...] = tuple(
    """
    getattr setattr delattr hasattr open eval exec compile globals locals vars type object print input
    breakpoint help dir exit quit super classmethod staticmethod property memoryview bytearray bytes
    callable id
    """.split()
)

#: attribute names never allowed on values besides the scanned methods (coffea NanoEvents plumbing)
DENIED_ATTRS: tuple[str, ...] = tuple(
    """
    add_systematic add_kind describe_variations explodes_how systematics metadata collection_map
    behavior layout attrs lib func args keywords
    """.split()
)

#: attribute names never allowed on values, whatever the value is (I/O, introspection, mutation)
_DENIED_PATTERN = re.compile(
    r"^(to|from)_|^(to|from)(file|bytes|string|list|buffer)$|^(dump|save|load|read|write|open|close|flush|"
    r"exec|eval|compile|import|system|popen|spawn|fork|remove|unlink|rename|mkdir|rmdir|chmod|chown)"
)

#: module aliases usable in expressions
MODULES: dict[str, str] = {
    "np": "numpy",
    "numpy": "numpy",
    "ak": "awkward",
    "awkward": "awkward",
    "math": "math",
}


@dataclass(frozen=True)
class Member:
    """An allowed module member: ``kind`` is ufunc, function, dtype or constant; ``max_args`` bounds
    positionals (a ufunc's inputs; ``outputs`` its outputs)."""

    module: str
    name: str
    kind: str
    max_args: int | None = None
    outputs: int = 0

    @property
    def label(self) -> str:
        prefix = {"numpy": "np", "awkward": "ak", "math": "math"}[self.module]
        return f"{prefix}.{self.name}"


@functools.cache
def members(module: str) -> dict[str, Member]:
    """The allowed members of ``module`` (``numpy``, ``awkward`` or ``math``) by name."""
    if module == "numpy":
        import numpy as np

        ufuncs = {n: getattr(np, n) for n in NUMPY_UFUNCS if hasattr(np, n)}
        out = {n: Member(module, n, "ufunc", u.nin, u.nout) for n, u in ufuncs.items()}
        out.update({n: Member(module, n, "function", k) for n, k in NUMPY_FUNCTIONS.items()})
        out.update({n: Member(module, n, "dtype", 1) for n in NUMPY_DTYPES})
        out.update({n: Member(module, n, "constant") for n in NUMPY_CONSTANTS})
        return out
    if module == "awkward":
        return {n: Member(module, n, "function", k) for n, k in AWKWARD_FUNCTIONS.items()}
    if module == "math":
        out = {n: Member(module, n, "function", k) for n, k in MATH_FUNCTIONS.items()}
        out.update({n: Member(module, n, "constant") for n in MATH_CONSTANTS})
        return out
    raise KeyError(module)


def member(alias: str, name: str) -> Member | None:
    """The allowed member ``alias.name`` (``alias`` in :data:`MODULES`), or None."""
    return members(MODULES[alias]).get(name)


@functools.lru_cache(maxsize=1)
def denied_value_attrs() -> frozenset[str]:
    """Attribute names that are methods/properties of the objects an expression can reach
    (numpy/awkward arrays, records, scalars, ufuncs, functions, types, vector classes) and
    are not in :data:`VECTOR_ATTRS` or :data:`ARRAY_ATTRS`: they cannot be used as field names."""
    import awkward as ak
    import numpy as np

    classes: list[type] = [
        np.ndarray,
        np.generic,
        np.float64,
        np.int64,
        np.bool_,
        np.ufunc,
        np.dtype,
        ak.Array,
        ak.Record,
        type,
        object,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.MethodType,
        types.ModuleType,
        int,
        float,
        bool,
        complex,
        str,
        bytes,
        tuple,
        list,
        dict,
        set,
        slice,
        functools.partial,
        *(getattr(np, n) for n in NUMPY_DTYPES),
    ]
    try:
        import vector.backends.awkward
        import vector.backends.numpy
        import vector.backends.object

        for mod in (vector.backends.awkward, vector.backends.numpy, vector.backends.object):
            classes += [c for c in vars(mod).values() if isinstance(c, type)]
    except ImportError:  # pragma: no cover - vector is a dependency
        pass
    names = {n for c in classes for n in dir(c) if not n.startswith("_")} | set(DENIED_ATTRS)
    return frozenset(names - set(VECTOR_ATTRS) - set(ARRAY_ATTRS))


def value_attr_allowed(name: str) -> bool:
    """``value.name`` is allowed: a vector/array attribute of the allow-list, or a plain field name
    (no leading underscore, not a method of a reachable object, not named like I/O)."""
    if name in VECTOR_ATTRS or name in ARRAY_ATTRS:
        return True
    return not name.startswith("_") and name not in denied_value_attrs() and not _DENIED_PATTERN.search(name)


# ------------------------------------------------------------------ documentation
def _names(items: object) -> str:
    return ", ".join(f"`{n}`" for n in items)


def _arity(table: dict[str, int | None]) -> str:
    return ", ".join(f"`{n}`" + ("" if k is None else f" ({k})") for n, k in table.items())


def render_markdown() -> str:
    """The allow-list section of ``docs/expressions.md``, generated from these tables."""
    lines = [
        "### Module members",
        "",
        "Numbers in brackets: the most positional arguments a call may pass (further arguments,",
        "such as a positional `out`, are rejected).",
        "",
        "- numpy ufuncs (`np.` or `numpy.`; a positional output argument is rejected): "
        f"{_names(NUMPY_UFUNCS)}",
        f"- numpy functions: {_arity(NUMPY_FUNCTIONS)}",
        f"- numpy scalar types (dtype arguments, or `np.float32(x)`): {_names(NUMPY_DTYPES)}",
        f"- numpy constants: {_names(NUMPY_CONSTANTS)}",
        f"- awkward functions (`ak.` or `awkward.`): {_arity(AWKWARD_FUNCTIONS)}",
        f"- math functions: {_arity(MATH_FUNCTIONS)}",
        f"- math constants: {_names(MATH_CONSTANTS)}",
        f"- helper functions (bare names): {_arity(HELPER_FUNCTIONS)}",
        "",
        "### Size arguments",
        "",
        *[
            f"- `{f}`: argument {pos + 1} / `{kw}=` at most {limit:,} (constant, checked when parsed; "
            "the value computed from data is checked again when run)"
            for f, (pos, kw, limit) in SIZE_ARGUMENTS.items()
        ],
        f"- `ak.pad_none`: in total at most {MAX_FREE_ELEMENTS:,} padded elements; `np.bincount`: at most "
        f"max({MAX_FREE_ELEMENTS:,}, 16 x input length) bins",
        "",
        "### Attributes of values",
        "",
        f"- vector properties and methods: {_names(VECTOR_ATTRS)}",
        f"- numpy array attributes: {_names(ARRAY_ATTRS)}",
        f"- most positional arguments of these methods: {_arity(dict(METHOD_MAX_POSITIONAL))}",
        "- any other plain field name: no leading underscore, not a method or property of numpy/awkward",
        "  arrays, records, scalars, functions, types or vector classes, not one of "
        f"{_names(DENIED_ATTRS)}, and not named like I/O",
        "  (`to_*`, `from_*`, `tofile`, `tobytes`, `tolist`, `dump*`, `save*`, `load*`, `read*`, `write*`,",
        "  `open*`, ...)",
        "",
        "### Other rules",
        "",
        f"- string constants: only call arguments naming a dtype ({_names(DTYPE_NAMES)}) or subscripts "
        "naming a field",
        f"- forbidden keywords: {_names(FORBIDDEN_KEYWORDS)}",
        f"- reserved names (never variables): {_names(RESERVED_NAMES)}",
        f"- expressions at most {MAX_EXPRESSION_LENGTH:,} characters; "
        f"integers at most {MAX_INT_BITS:,} bits; "
        f"constant exponents and shifts at most {MAX_CONST_EXPONENT:,}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown(), end="")
