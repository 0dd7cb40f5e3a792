"""Attach jet constituents through an index collection (NanoAOD ``FatJetPFCand``-style).

CMS NanoAOD stores which PF candidates belong to which fat jet in a separate
collection of index pairs (``FatJetPFCand_jetIdx``, ``FatJetPFCand_pfCandIdx``);
coffea's ``FatJet.constituents`` only resolves them for some PFNano layouts.
:func:`gather_constituents` does it columnarly for any such triplet of collections.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np


class ConstituentIndexError(ValueError):
    """The index collection points outside the jet or candidate collections."""


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def gather_constituents(
    jets: Any, index: Any, candidates: Any, jet_index: str = "jetIdx", candidate_index: str = "pfCandIdx"
) -> ak.Array:
    """The candidates of every jet, as ``events x jets x constituents`` records.

    Parameters
    ----------
    jets, candidates
        Jagged collections per event (e.g. ``events.FatJet``, ``events.PFCand``).
    index
        Jagged collection of (jet, candidate) index pairs per event (``events.FatJetPFCand``).
    jet_index, candidate_index
        Field names of the two indices in ``index``.

    Returns
    -------
    ak.Array
        Candidate records (all fields of ``candidates``, no behaviour) grouped per jet, in the
        order the index collection lists them. With dask-awkward inputs the result is a lazy
        dask-awkward array (one ``map_partitions`` task per partition; of the jets only their
        number per event is read).
    """
    if any(type(a).__module__.startswith("dask_awkward") for a in (jets, index, candidates)):
        import dask_awkward as dak

        index = index[[jet_index, candidate_index]]
        return dak.map_partitions(
            _gather_partition,
            ak.num(jets, axis=1),
            index,
            candidates,
            jet_index,
            candidate_index,
            label="gather-constituents",
        )
    return _gather(ak.num(jets, axis=1), index, candidates, jet_index, candidate_index)


def _gather_partition(
    n_jets: ak.Array, index: ak.Array, candidates: ak.Array, jet_index: str, candidate_index: str
) -> ak.Array:
    """One partition of :func:`gather_constituents`; on typetracers, the output form only."""
    if ak.backend(n_jets, index, candidates) == "typetracer":
        # touch what the eager path reads, then derive the output form from length-zero inputs
        zero = [ak.typetracer.length_zero_if_typetracer(a) for a in (n_jets, index, candidates)]
        out = _gather(*zero, jet_index, candidate_index)
        return ak.Array(out.layout.to_typetracer(forget_length=True))
    return _gather(n_jets, index, candidates, jet_index, candidate_index)


def _gather(n_jets: Any, index: Any, candidates: Any, jet_index: str, candidate_index: str) -> ak.Array:
    n_jets = ak.to_numpy(n_jets).astype(np.int64)
    n_cands = ak.to_numpy(ak.num(candidates, axis=1)).astype(np.int64)
    n_pairs = ak.to_numpy(ak.num(index, axis=1)).astype(np.int64)
    event = np.repeat(np.arange(len(n_pairs)), n_pairs)
    jet_idx = ak.to_numpy(ak.flatten(index[jet_index], axis=1)).astype(np.int64)
    cand_idx = ak.to_numpy(ak.flatten(index[candidate_index], axis=1)).astype(np.int64)
    bad = (jet_idx < 0) | (jet_idx >= n_jets[event]) | (cand_idx < 0) | (cand_idx >= n_cands[event])
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ConstituentIndexError(
            f"{int(bad.sum())} index pair(s) point outside the collections, "
            f"first in event {int(event[first])}: "
            f"{jet_index}={int(jet_idx[first])} (of {int(n_jets[event[first]])} jets), "
            f"{candidate_index}={int(cand_idx[first])} (of {int(n_cands[event[first]])} candidates)"
        )
    global_jet = _offsets(n_jets)[:-1][event] + jet_idx
    global_cand = _offsets(n_cands)[:-1][event] + cand_idx
    order = np.argsort(global_jet, kind="stable")
    per_jet = np.bincount(global_jet, minlength=int(n_jets.sum()))
    flat = ak.flatten(ak.Array(candidates, behavior={}), axis=1)
    fields = {f: ak.to_numpy(flat[f])[global_cand[order]] for f in ak.fields(flat)}
    grouped = ak.unflatten(ak.zip(fields), per_jet)
    return ak.unflatten(grouped, n_jets)


def jet_table(
    jets: Any, constituents: ak.Array, jet_fields: list[str], candidate_fields: list[str]
) -> ak.Array:
    """``events x jets`` records with ``jet_<field>`` and jagged ``cand_<field>`` columns.

    This flat naming is what a ``branch_map`` of :class:`~hepnn_coffea.OnnxTagger`
    refers to (see ``processors/nanoaod_toptag.py``).
    """
    columns = {f"jet_{f}": jets[f] for f in jet_fields}
    columns.update({f"cand_{f}": constituents[f] for f in candidate_fields})
    return ak.zip(columns, depth_limit=2)
