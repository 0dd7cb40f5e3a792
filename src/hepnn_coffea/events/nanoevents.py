"""Build coffea NanoEvents (with ``GenPart`` navigation) from flat, eagerly loaded branches.

A coffea ``Runner`` with ``BaseSchema`` hands a processor the flat branches of a chunk
(``nGenPart``, ``GenPart_pt``, ..., ``nFatJet``, ``FatJet_pt``, ...). :func:`to_nanoevents`
turns such a mapping into NanoEvents, so that ``events.GenPart.children``,
``events.GenPart.distinctParent`` and ``events.GenPart.hasFlags(...)`` work, as they do for
a file opened with ``NanoEventsFactory.from_root(..., schemaclass=NanoAODSchema)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

__all__ = ["to_nanoevents"]

#: Warnings NanoAODSchema emits for every cross-reference whose collections are not in the
#: input (``Electron_genPartIdx => GenPart`` ...): harmless for our reduced files.
_CROSSREF_WARNING = r"Missing cross-reference (index|target)"


class _PreloadedSource(dict):
    """The mapping ``NanoEventsFactory.from_preloaded`` wants: a dict with a ``metadata`` attribute."""

    metadata: dict[str, Any]


def _eager(array: Any) -> ak.Array:
    """A materialised, packed awkward array (no virtual buffers, offsets starting at 0)."""
    return ak.to_packed(ak.materialize(ak.Array(array) if not isinstance(array, ak.Array) else array))


def _is_jagged(array: ak.Array) -> bool:
    return array.ndim >= 2 and isinstance(array.type.content, ak.types.ListType)


def _with_counters(branches: dict[str, ak.Array]) -> dict[str, ak.Array]:
    """Add the ``n<Collection>`` counter of every jagged collection that lacks one.

    Raises
    ------
    ValueError
        If the jagged branches of one collection disagree on their per-event lengths.
    """
    counts_of: dict[str, tuple[str, np.ndarray]] = {}
    for name, array in branches.items():
        if "_" not in name or not _is_jagged(array):
            continue
        collection = name.split("_", 1)[0]
        counts = ak.to_numpy(ak.num(array, axis=1))
        if collection in counts_of:
            first_name, first_counts = counts_of[collection]
            if not np.array_equal(first_counts, counts):
                raise ValueError(
                    f"branches {first_name!r} and {name!r} of collection {collection!r} "
                    "have different numbers of entries per event"
                )
        else:
            counts_of[collection] = (name, counts)
    out = dict(branches)
    for collection, (_, counts) in counts_of.items():
        out.setdefault(f"n{collection}", ak.Array(counts.astype(np.int32)))
    return out


def to_nanoevents(branches: Mapping[str, ak.Array], n_events: int, schema: type = NanoAODSchema) -> ak.Array:
    """NanoEvents built from flat branches, with the schema's collections and cross-references.

    Parameters
    ----------
    branches : Mapping[str, ak.Array]
        Branch name -> array of ``n_events`` rows, NanoAOD naming (``GenPart_pt``, ``FatJet_eta``,
        ``run``, ...). Jagged branches of one collection must share their per-event lengths.
        The ``n<Collection>`` counters may be present or not; missing ones are added from
        ``ak.num`` of a branch of the collection (coffea needs them for the collection offsets
        and hence for ``GenPart.children`` / ``distinctParent``).
        Virtual or lazily loaded arrays are materialised.
    n_events : int
        Number of events (rows of every branch).
    schema : type, optional
        The coffea schema class, ``NanoAODSchema`` by default.

    Returns
    -------
    ak.Array
        The events (eager ``NanoEvents``), e.g. ``events.GenPart``, ``events.FatJet``.

    Raises
    ------
    ValueError
        If a branch does not have ``n_events`` rows, or the branches of a collection disagree.

    Notes
    -----
    The ``RuntimeWarning`` s about missing cross-reference indices (collections that these
    files do not have) are silenced for this call only.
    """
    if n_events < 0:
        raise ValueError(f"n_events must be non-negative, got {n_events}")
    eager: dict[str, ak.Array] = {}
    for name, array in branches.items():
        eager[name] = _eager(array)
        if len(eager[name]) != n_events:
            raise ValueError(f"branch {name!r} has {len(eager[name])} rows, expected n_events={n_events}")
    source = _PreloadedSource(_with_counters(eager))
    source.metadata = {
        "uuid": "preloaded",
        "num_rows": int(n_events),
        "path": "preloaded",
        "object_path": "Events",
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_CROSSREF_WARNING, category=RuntimeWarning)
        return NanoEventsFactory.from_preloaded(source, schemaclass=schema).events()
