"""An existing NanoAOD analysis that adds the top / W / QCD fat-jet tagger in one line.

The processor stands for any coffea analysis of NanoAOD fat jets: the one line
``events["FatJet", "hepnn"] = tagger.fatjets(events)`` gathers every fat jet's PF
candidates through ``FatJetPFCand``, computes the model's features with the code that
made its training shards, and attaches ``score_top``, ``score_W``, ``score_QCD``.
It then fills the soft-drop mass of top-tagged jets with the cross-section weight.
Runs on NanoEvents in every coffea mode (eager, virtual under ``processor.Runner``,
dask, where the hists are ``hist.dask`` hists).
"""

from __future__ import annotations

import warnings
from typing import Any

import hist
from coffea import processor

from hepnn_coffea import OnnxTagger

# NanoAODSchema warns about every cross-reference whose collection these files do not have
warnings.filterwarnings("ignore", message="Missing cross-reference", category=RuntimeWarning)


class FatJetTagAnalysis(processor.ProcessorABC):
    """Soft-drop mass of fat jets with ``score_top / (score_top + score_QCD) > cut``, per dataset.

    Parameters
    ----------
    model
        ONNX file exported from a run on ``models/data/nanoaod_fatjet.yaml`` shards.
    cut
        Threshold on the top-vs-QCD discriminant.
    lumi
        Integrated luminosity in pb^-1 for the weights ``genWeight * xsec * lumi / sumw``
        (dataset metadata ``xsec`` and ``sumw``; weight 1 without them).
    """

    def __init__(self, model: str, cut: float = 0.9, lumi: float = 1000.0) -> None:
        self.tagger = OnnxTagger(model)
        self.cut = float(cut)
        self.lumi = float(lumi)

    def process(self, events: Any) -> dict[str, Any]:
        is_dask = type(events).__module__.startswith("dask_awkward")
        if is_dask:
            import dask_awkward as lib
            from hist.dask import Hist
        else:
            import awkward as lib
            from hist import Hist
        events["FatJet", "hepnn"] = self.tagger.fatjets(events)  # the one line
        jets = events.FatJet[events.FatJet.pt > 300]
        top_vs_qcd = jets.hepnn.score_top / (jets.hepnn.score_top + jets.hepnn.score_QCD)
        tagged = jets[top_vs_qcd > self.cut]
        meta = events.metadata
        scale = (
            float(meta["xsec"]) * self.lumi / float(meta["sumw"])
            if "xsec" in meta and "sumw" in meta
            else 1.0
        )
        weight = lib.broadcast_arrays(events.genWeight * scale, tagged.pt)[0]
        mass = Hist(
            hist.axis.Regular(30, 0, 300, name="msoftdrop", label="Top-tagged FatJet $m_{SD}$ [GeV]"),
            storage=hist.storage.Weight(),
        )
        mass.fill(msoftdrop=lib.flatten(tagged.msoftdrop), weight=lib.flatten(weight))
        dataset = meta.get("dataset", "events")
        return {
            dataset: {
                "msoftdrop_tagged": mass,
                "n_jets": lib.num(lib.flatten(jets.pt), axis=0),
                "n_tagged": lib.num(lib.flatten(tagged.pt), axis=0),
            }
        }

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator
