"""Systematic variations of the raw constituent branches, reproducible per chunk.

Pure functions over a mapping ``branch -> array`` (the model's branches of one chunk, or the
fields of the event workflow's jet rows): they return a new mapping in which the constituent
branches of a :class:`~hepnn_coffea.config.variations_config.ConstituentLayout` are scaled,
smeared or thinned, so the data config's expressions (the feature code) then run unchanged.
Jet-level branches are never changed.

The random numbers of a chunk come from :func:`chunk_rng`, seeded by (seed, variation name,
file, entry range): ``processor.Runner`` and the dask path split files into the same entry
ranges, so they give the same varied scores, and adding a variation does not change another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.config.variations_config import ConstituentLayout, Variation, VariationsConfig


class VariationError(ValueError):
    """The events do not carry what a variation needs."""


def _hash(text: str) -> int:
    return int(hashlib.sha1(str(text).encode()).hexdigest()[:8], 16)


def chunk_rng(seed: int, variation: str, file: str, start: int, stop: int) -> np.random.Generator:
    """The random generator of one variation on one chunk (entries ``[start, stop)`` of ``file``)."""
    return np.random.default_rng([int(seed), _hash(variation), _hash(file), int(start), int(stop)])


def _parts(array: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Counts per entry and the flat numpy content of a jagged ``(n, var)`` array."""
    array = ak.Array(array) if not isinstance(array, ak.Array) else array
    if array.ndim != 2:
        raise VariationError(
            f"constituent branch '{name}' is not jagged (one list per jet); got {array.type}"
        )
    return ak.to_numpy(ak.num(array, axis=1)).astype(np.int64), ak.to_numpy(ak.flatten(array, axis=1))


def particle_mask(fields: Mapping[str, Any], layout: ConstituentLayout, particles: str, n: int) -> np.ndarray:
    """Flat boolean mask of the constituents a variation acts on (``charged``: charge != 0)."""
    if particles == "all":
        return np.ones(n, dtype=bool)
    if layout.charge_branch not in fields:
        raise VariationError(f"a '{particles}' variation needs the charge branch '{layout.charge_branch}'")
    _, charge = _parts(fields[layout.charge_branch], layout.charge_branch)
    if len(charge) != n:
        raise VariationError(
            f"'{layout.charge_branch}' has {len(charge)} constituents but the momenta have {n}"
        )
    charged = charge != 0
    return charged if particles == "charged" else ~charged


def scale(
    momenta: dict[str, np.ndarray], layout: ConstituentLayout, factor: float, mask: np.ndarray
) -> dict[str, np.ndarray]:
    """Four-momenta times ``factor`` (direction kept): all of px, py, pz, E, or pt and mass."""
    names = layout.momentum if layout.kinematics == "pxpypze" else (layout.momentum[0], layout.momentum[3])
    return {k: np.where(mask, v * factor, v) if k in names else v for k, v in momenta.items()}


def smear(
    momenta: dict[str, np.ndarray],
    layout: ConstituentLayout,
    sigma: float,
    mask: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Gaussian ``sigma`` added to every constituent's eta and phi, keeping ``|p|`` and the energy (a
    rotation).

    ``pxpypze``: new (px, py, pz) of the same ``|p|``; ``ptetaphim``: new eta and phi, ``pt`` such that
    ``|p| = pt cosh(eta)`` is kept, mass unchanged. Constituents with ``pt = 0`` are not changed.
    """
    n = len(mask)
    d_eta, d_phi = sigma * rng.standard_normal(n), sigma * rng.standard_normal(n)
    a, b, c, d = (momenta[k] for k in layout.momentum)
    if layout.kinematics == "pxpypze":
        pt = np.hypot(a, b)
        ok = mask & (pt > 0)
        safe = np.where(ok, pt, 1.0)
        p = np.hypot(pt, c)
        eta = np.arcsinh(c / safe) + d_eta
        phi = np.arctan2(b, a) + d_phi
        pt_new = p / np.cosh(eta)
        new = (pt_new * np.cos(phi), pt_new * np.sin(phi), pt_new * np.sinh(eta), d)
    else:
        ok = mask & (a > 0)
        eta = b + d_eta
        phi = np.mod(c + d_phi + np.pi, 2 * np.pi) - np.pi
        new = (a * np.cosh(b) / np.cosh(eta), eta, phi, d)
    return {k: np.where(ok, v_new, momenta[k]) for k, v_new in zip(layout.momentum, new)}


def vary_constituents(
    fields: Mapping[str, Any], variation: Variation, layout: ConstituentLayout, rng: np.random.Generator
) -> dict[str, Any]:
    """``fields`` with ``variation`` applied to the constituents (a new mapping; jet branches untouched).

    ``scale``/``smear`` replace the four-momentum branches (computed in float64, stored in the
    branch's own dtype, so a scale of 1.0 returns the same values); ``drop`` removes each selected
    constituent with probability ``fraction`` from every jagged ``<prefix>*`` branch.
    """
    missing = [b for b in layout.momentum if b not in fields]
    if missing:
        raise VariationError(
            f"variation '{variation.name}': constituent branches {missing} not among the branches "
            f"read ({sorted(fields)}); set variations.constituents"
        )
    parts = {b: _parts(fields[b], b) for b in layout.momentum}
    counts = parts[layout.momentum[0]][0]
    for b, (c, _) in parts.items():
        if not np.array_equal(c, counts):
            raise VariationError(
                f"constituent branches {layout.momentum[0]} and {b} have different lengths per jet"
            )
    n = int(counts.sum())
    mask = particle_mask(fields, layout, variation.particles, n)
    out = dict(fields)
    if variation.type == "drop":
        keep = ~(mask & (rng.random(n) < variation.fraction))
        jet = np.repeat(np.arange(len(counts)), counts)
        new_counts = np.bincount(jet[keep], minlength=len(counts)).astype(np.int64)
        for name, value in fields.items():
            if name.startswith(layout.prefix) and isinstance(value, ak.Array) and value.ndim == 2:
                c, flat = _parts(value, name)
                if not np.array_equal(c, counts):
                    raise VariationError(
                        f"'{name}' does not have one value per constituent of {layout.momentum[0]}"
                    )
                out[name] = ak.unflatten(flat[keep], new_counts)
        return out
    dtypes = {b: flat.dtype for b, (_, flat) in parts.items()}
    momenta = {b: flat.astype(np.float64) for b, (_, flat) in parts.items()}
    if variation.type == "scale":
        momenta = scale(momenta, layout, float(variation.factor), mask)
    elif variation.type == "smear":
        momenta = smear(momenta, layout, float(variation.sigma), mask, rng)
    else:
        raise VariationError(
            f"variation '{variation.name}' of type '{variation.type}' does not change constituents"
        )
    for b, values in momenta.items():
        out[b] = ak.unflatten(values.astype(dtypes[b]), counts)
    return out


def weight_factors(variation: Variation, table: Any, n: int) -> np.ndarray:
    """The per-entry factor of a ``weight`` variation: its expression over ``table`` (a VariableTable)."""
    value = table.evaluate(variation.expression, key=f"variations.define.{variation.name}.expression")
    if isinstance(value, ak.Array):
        if value.ndim != 1:
            raise VariationError(
                f"variation '{variation.name}': the expression must give one number per jet, got {value.type}"
            )
        value = ak.to_numpy(value)
    factor = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))
    if not np.all(np.isfinite(factor)):
        raise VariationError(f"variation '{variation.name}': the weight expression gives NaN or inf")
    return factor


def expression_branches(expressions: Iterable[str], definitions: Mapping[str, str]) -> set[str]:
    """Branches the expressions read, through the (new-variable) ``definitions``."""
    from hepnn_coffea.features.expressions import Expression

    stack = [n for e in expressions for n in Expression(e).names]
    seen: set[str] = set()
    branches: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in definitions:
            stack += Expression(definitions[name]).names
        else:
            branches.add(name)
    return branches


class VariationPass:
    """The variations of one evaluation processor: constituent layout, extra branches, the per-chunk loop.

    Parameters
    ----------
    config
        The variations.
    branches
        The branches the model reads (to detect the constituent layout when not declared).
    definitions
        The data config's new variables (weight expressions may use them).
    """

    def __init__(
        self, config: VariationsConfig, branches: Iterable[str], definitions: Mapping[str, str]
    ) -> None:
        self.config = config
        self.definitions = dict(definitions)
        self.layout = config.layout(branches) if config.needs_constituents else None

    def extra_branches(self) -> set[str]:
        """Branches read only for the variations: the charge, and what weight expressions use."""
        extra = expression_branches(self.config.expressions(), self.definitions)
        if any(v.needs_charge for v in self.config.define):
            extra.add(self.layout.charge_branch)
        return extra

    def run(
        self,
        fields: Mapping[str, Any],
        chunk: Any,
        sample: str,
        nominal: dict[str, Any],
        *,
        evaluate: Callable[[dict[str, Any], str], dict[str, Any]],
        selected: np.ndarray,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(name, result)`` of every variation of one chunk.

        ``evaluate(fields, where)`` scores varied fields and returns a result like ``nominal``
        (a dict with at least ``weight``); a weight variation returns ``nominal`` with its
        weights times the factor of the ``selected`` entries, a variation not applying to
        ``sample`` the ``nominal`` itself.
        """
        from hepnn_coffea.features.expressions import VariableTable

        table = None
        for v in self.config.define:
            if not v.applies_to(sample):
                yield v.name, nominal
            elif v.is_weight:
                if table is None:
                    table = VariableTable(fields, self.definitions, chunk.where)
                factor = weight_factors(v, table, len(selected))[selected]
                yield v.name, {**nominal, "weight": nominal["weight"] * factor}
            else:
                rng = chunk_rng(self.config.seed, v.name, chunk.file, chunk.start, chunk.stop)
                varied = vary_constituents(fields, v, self.layout, rng)
                yield v.name, evaluate(varied, f"{chunk.where} (variation {v.name})")
