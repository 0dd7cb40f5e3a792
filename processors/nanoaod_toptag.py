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

    def __init__(self, model: str, *, layout: str = "nanoaod", reference: str = "particleNetWithMass_TvsQCD",
                 branch_map: dict[str, str] | None = None) -> None:  # fmt: skip
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
        jets = self.add_scores(events)
        ours = ak.to_numpy(ak.flatten(jets.hepnn_top)).astype(np.float64)
        theirs = ak.to_numpy(ak.flatten(jets[self.reference])).astype(np.float64)
        pt = ak.to_numpy(ak.flatten(jets.pt)).astype(np.float64)
        good = np.isfinite(ours)
        h = hist.Hist(hist.axis.Regular(20, 0, 1, name="hepnn", label="hepnn_coffea top score"),
                      hist.axis.Regular(20, 0, 1, name="cms", label=f"CMS {self.reference}"),
                      storage=hist.storage.Weight())  # fmt: skip
        h.fill(hepnn=ours[good], cms=theirs[good])
        score_pt = hist.Hist(hist.axis.Regular(20, 0, 1, name="hepnn", label="hepnn_coffea top score"),
                             hist.axis.Regular(20, 200, 1200, name="pt", label="FatJet pT [GeV]"))  # fmt: skip
        score_pt.fill(hepnn=ours[good], pt=pt[good])
        x, y = ours[good], theirs[good]
        sums = np.array([len(x), x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()])
        dataset = events.metadata.get("dataset", "events")
        return {dataset: {"score_vs_cms": h, "score_vs_pt": score_pt, "moments": sums,
                          "n_fatjets": int(len(ours)), "n_scored": int(good.sum())}}  # fmt: skip

    def postprocess(self, accumulator: Any) -> Any:
        for result in accumulator.values():
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
