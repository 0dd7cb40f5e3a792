"""Run a hepnn_coffea top tagger inside an existing CMS NanoAOD analysis.

The fat jets' PF candidates are gathered through the NanoAOD index collection
(``FatJetPFCand``: ``jetIdx``/``pfCandIdx``; PFNano: ``FatJetPFCands``/``pFCandsIdx``),
the model inputs are built from the candidates' (pt, eta, phi, mass) by a declared
``branch_map`` (the model's own data config is untouched), and the score is added to
the fat jets and histogrammed next to CMS's ``FatJet_particleNetWithMass_TvsQCD``.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor

from hepnn_coffea import OnnxTagger
from hepnn_coffea.inference.constituents import gather_constituents, jet_table

#: model branch (top_kin data config) -> expression over jet_<field> / cand_<field> of a NanoAOD fat jet
NANOAOD_BRANCH_MAP = {
    "part_px": "_p4_from_ptetaphim(cand_pt, cand_eta, cand_phi, cand_mass).px",
    "part_py": "_p4_from_ptetaphim(cand_pt, cand_eta, cand_phi, cand_mass).py",
    "part_pz": "_p4_from_ptetaphim(cand_pt, cand_eta, cand_phi, cand_mass).pz",
    "part_energy": "_p4_from_ptetaphim(cand_pt, cand_eta, cand_phi, cand_mass).energy",
    "jet_pt": "jet_pt",
    "jet_eta": "jet_eta",
    "jet_phi": "jet_phi",
    "jet_energy": "_p4_from_ptetaphim(jet_pt, jet_eta, jet_phi, jet_mass).energy",
    "jet_nparticles": "ak.num(cand_pt, axis=1)",
}
#: (jets, index collection, candidates, jet index field, candidate index field) per NanoAOD flavour
LAYOUTS = {
    "nanoaod": ("FatJet", "FatJetPFCand", "PFCand", "jetIdx", "pfCandIdx"),
    "pfnano": ("FatJet", "FatJetPFCands", "PFCands", "jetIdx", "pFCandsIdx"),
}


class NanoAODTopTagProcessor(processor.ProcessorABC):
    """Adds ``FatJet.hepnn_top`` (the model's top score) and compares it with CMS's tagger.

    Parameters
    ----------
    model
        ONNX file from ``hepnn export`` trained with ``models/data/top_kin.yaml``-like inputs.
    layout
        ``"nanoaod"`` or ``"pfnano"`` (collection names, see :data:`LAYOUTS`).
    reference
        FatJet field with the score to compare to.
    branch_map
        Model branch -> expression over ``jet_*``/``cand_*`` (default :data:`NANOAOD_BRANCH_MAP`).
    """

    def __init__(
        self,
        model: str,
        *,
        layout: str = "nanoaod",
        reference: str = "particleNetWithMass_TvsQCD",
        branch_map: dict[str, str] | None = None,
    ) -> None:
        self.tagger = OnnxTagger(model, branch_map=branch_map or NANOAOD_BRANCH_MAP)
        self.layout = LAYOUTS[layout]
        self.reference = reference

    def add_scores(self, events: Any) -> Any:
        """The events' fat jets with the model's scores attached as ``hepnn_top``."""
        jets_name, index_name, cands_name, jet_idx, cand_idx = self.layout
        jets = events[jets_name]
        constituents = gather_constituents(jets, events[index_name], events[cands_name], jet_idx, cand_idx)
        table = jet_table(jets, constituents, ["pt", "eta", "phi", "mass"], ["pt", "eta", "phi", "mass"])
        scores = self.tagger(table)
        return ak.with_field(jets, scores[self.tagger.output_fields[0]], "hepnn_top")

    def process(self, events: Any) -> dict[str, Any]:
        """Hists of our score vs CMS's and vs pT, and the moments of the correlation (eager or dask)."""
        is_dask = type(events).__module__.startswith("dask_awkward")
        if is_dask:
            import dask_awkward as lib
            from hist.dask import Hist
        else:
            lib, Hist = ak, hist.Hist
        jets = self.add_scores(events)
        ours = lib.flatten(jets.hepnn_top)
        good = np.isfinite(ours)
        x = ours[good]
        y = (lib.flatten(jets[self.reference]))[good]
        pt = (lib.flatten(jets.pt))[good]
        h = Hist(
            hist.axis.Regular(20, 0, 1, name="hepnn", label="hepnn_coffea top score"),
            hist.axis.Regular(20, 0, 1, name="cms", label=f"CMS {self.reference}"),
            storage=hist.storage.Weight(),
        )
        h.fill(hepnn=x, cms=y)
        score_pt = Hist(
            hist.axis.Regular(20, 0, 1, name="hepnn", label="hepnn_coffea top score"),
            hist.axis.Regular(20, 200, 1200, name="pt", label="FatJet pT [GeV]"),
        )
        score_pt.fill(hepnn=x, pt=pt)
        moments = [lib.num(x, axis=0), lib.sum(x), lib.sum(y), lib.sum(x * x), lib.sum(y * y), lib.sum(x * y)]
        dataset = events.metadata.get("dataset", "events")
        return {
            dataset: {
                "score_vs_cms": h,
                "score_vs_pt": score_pt,
                "moments": moments if is_dask else np.asarray(moments, dtype=np.float64),
                "n_fatjets": lib.num(ours, axis=0),
                "n_scored": lib.num(x, axis=0),
            }
        }

    def postprocess(self, accumulator: Any) -> Any:
        for result in accumulator.values():
            result["moments"] = np.asarray(result["moments"], dtype=np.float64)
            result["correlation"] = correlation(result["moments"])
        return accumulator


def correlation(moments: np.ndarray) -> float:
    """Pearson correlation from accumulated ``[n, sum x, sum y, sum x^2, sum y^2, sum xy]``."""
    n, sx, sy, sxx, syy, sxy = (float(m) for m in moments)
    if n < 2:
        return float("nan")
    cov = sxy / n - sx * sy / n**2
    var_x, var_y = sxx / n - (sx / n) ** 2, syy / n - (sy / n) ** 2
    return cov / np.sqrt(var_x * var_y) if var_x > 0 and var_y > 0 else float("nan")
