"""Row fields of a ``rows:`` data config from NanoAOD events (one code path for training and inference).

:func:`jet_rows` turns events (coffea NanoEvents, eager, virtual or dask) into an
``events x jets`` record array whose fields are the row fields of
:class:`~hepnn_coffea.config.rows_config.RowsConfig`: the jets' own fields
(``FatJet_pt``), their constituents gathered through the index collection
(``PFCand_pt``, jagged per jet), event fields broadcast to the jets and the jet's
index in its event. Preprocessing flattens it to one row per jet and adds the
generated fields (:func:`add_truth`: labels from generator matching, the
cross-section weight, the event-wise split); the tagger runs on it directly.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea.config.rows_config import CANDIDATE_PREFIX, GEN_CLASSES, LAYOUTS, RowsConfig
from hepnn_coffea.inference.constituents import gather_constituents


def _is_dask(array: Any) -> bool:
    return type(array).__module__.startswith("dask_awkward")


def jet_rows(events: Any, rows: RowsConfig, names: list[str]) -> Any:
    """``events x jets`` records with the row fields ``names`` (generated truth fields excluded).

    Parameters
    ----------
    events
        NanoEvents with the collection, the index and candidate collections of ``rows.layout``
        and the event fields.
    rows
        The data config's ``rows`` section.
    names
        Row fields wanted (``FatJet_pt``, ``PFCand_eta``, ``event``, ``fatjet_index``, ...);
        labels, ``match_reason`` and ``xsec_weight`` are added by :func:`add_truth`.
    """
    lib: Any = ak
    if _is_dask(events):
        import dask_awkward as lib  # noqa: N813 - same API as awkward
    kinds = rows.row_fields(names)
    _check_fields(events, rows, kinds)
    jets = events[rows.collection]
    local = lib.local_index(jets, axis=1)
    columns: dict[str, Any] = {f"{rows.jet_prefix}{f}": jets[f] for f in kinds["jet"]}
    if kinds["candidate"]:
        index, cands, jet_idx, cand_idx = LAYOUTS[rows.layout]
        constituents = gather_constituents(jets, events[index], events[cands], jet_idx, cand_idx)
        columns.update({f"{CANDIDATE_PREFIX}{f}": constituents[f] for f in kinds["candidate"]})
    for name in kinds["event"]:
        columns[name] = lib.broadcast_arrays(events[name], local)[0]
    if rows.index_field in kinds["generated"]:
        columns[rows.index_field] = local
    return lib.zip(columns, depth_limit=2)


def _check_fields(events: Any, rows: RowsConfig, kinds: dict[str, list[str]]) -> None:
    """Every collection and field the row fields need exists (ValueError naming the missing ones)."""
    index, cands, _, _ = LAYOUTS[rows.layout]
    wanted = {
        rows.collection: kinds["jet"],
        **({index: [], cands: kinds["candidate"]} if kinds["candidate"] else {}),
    }
    missing = [name for name in kinds["event"] if name not in events.fields]
    for collection, fields in wanted.items():
        if collection not in events.fields:
            missing.append(collection)
            continue
        missing += [f"{collection}_{f}" for f in fields if f not in events[collection].fields]
    if missing:
        raise ValueError(
            f"the events lack {missing}, needed for the rows of '{rows.collection}' (layout '{rows.layout}')"
        )


def add_truth(table: ak.Array, events: Any, rows: RowsConfig, *, process: str, xsec_scale: float) -> ak.Array:
    """Flatten ``events x jets`` rows to one row per jet and add the generated fields.

    Adds ``run``/``luminosityBlock``/``event``, ``xsec_weight`` (``genWeight * xsec_scale``), the
    row's ``split`` index (0 train, 1 val, 2 test, per event) and, with ``rows.gen_match``, the 0/1
    class fields ``top``/``W``/``QCD`` and ``match_reason`` (0 = matched; see
    :data:`hepnn_coffea.events.genmatch.REASONS`). Jets of a background process are
    ``QCD`` whatever the generator record says.
    """
    from hepnn_coffea.events.split import event_split

    n_jets = ak.to_numpy(ak.num(table, axis=1)).astype(np.int64)
    columns = {f: ak.flatten(table[f], axis=1) for f in ak.fields(table)}
    split = event_split(
        ak.to_numpy(events.run),
        ak.to_numpy(events.luminosityBlock),
        ak.to_numpy(events.event),
        rows.split,
        rows.split_seed,
    )
    columns["split"] = np.repeat(np.asarray(split, dtype=np.int8), n_jets)
    for key in ("run", "luminosityBlock", "event"):  # always carried: they identify the row's event
        columns.setdefault(key, np.repeat(ak.to_numpy(events[key]), n_jets))
    gen_weight = (
        ak.to_numpy(events.genWeight).astype(np.float64) if "genWeight" in ak.fields(events) else None
    )
    weight = np.ones(len(n_jets)) if gen_weight is None else gen_weight
    columns["xsec_weight"] = np.repeat(weight * float(xsec_scale), n_jets)
    if rows.gen_match is not None:
        columns.update(_labels(events, rows, process, int(n_jets.sum())))
    return ak.zip(columns, depth_limit=1)


def _labels(events: Any, rows: RowsConfig, process: str, n_rows: int) -> dict[str, np.ndarray]:
    """One-hot class fields and ``match_reason`` per jet (flattened)."""
    from hepnn_coffea.events.genmatch import match_fatjets

    out = {name: np.zeros(n_rows, dtype=np.int8) for name in GEN_CLASSES}
    if process in rows.gen_match.background_processes:
        out["QCD"][:] = 1
        out["match_reason"] = np.zeros(n_rows, dtype=np.int8)
        return out
    match = match_fatjets(events[rows.collection], events.GenPart, dr=rows.gen_match.dr)
    out["top"] = ak.to_numpy(ak.flatten(match.top, axis=1)).astype(np.int8)
    out["W"] = ak.to_numpy(ak.flatten(match.W, axis=1)).astype(np.int8)
    out["match_reason"] = ak.to_numpy(ak.flatten(match.reason, axis=1)).astype(np.int8)
    return out
