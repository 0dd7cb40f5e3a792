"""An "existing analysis" that adds a trained top tagger in one line.

The processor stands for any coffea analysis of jets: it selects jets, adds the
tagger's scores as a column with :class:`hepnn_coffea.OnnxTagger` (the one
line), and fills the soft-drop mass of jets passing a score cut. It runs in all
coffea modes: eager, virtual (``processor.Runner``) and dask (``apply_to_fileset``,
where the hists are ``hist.dask`` hists and nothing is computed at graph build).
"""

from __future__ import annotations

from typing import Any

import hist
from coffea import processor

from hepnn_coffea import OnnxTagger


class TopTagAnalysis(processor.ProcessorABC):
    """Mass of jets with top-tag score above ``cut``, per dataset.

    Parameters
    ----------
    model
        ONNX file exported by ``hepnn export``.
    cut
        Threshold on the top score (``score_<first class>``).
    """

    def __init__(self, model: str, cut: float = 0.5) -> None:
        self.tagger = OnnxTagger(model)
        self.cut = cut
        self.score_field = self.tagger.output_fields[0]

    def process(self, events: Any) -> dict[str, Any]:
        dask_mode = type(events).__module__.startswith("dask_awkward")
        jets = events[events.jet_pt > 500]
        scores = self.tagger(jets)  # <- the one line that brings the network in
        tagged = jets[scores[self.score_field] > self.cut]
        if dask_mode:
            import hist.dask as hda

            make = hda.Hist
        else:
            make = hist.Hist
        mass = make(
            hist.axis.Regular(30, 0, 300, name="mass", label="Soft-drop mass [GeV]"),
            storage=hist.storage.Weight(),
        )
        mass.fill(mass=tagged.jet_sdmass)
        if dask_mode:
            import dask_awkward as dak

            n_jets, n_tagged = dak.num(jets, axis=0), dak.num(tagged, axis=0)
        else:
            n_jets, n_tagged = len(jets), len(tagged)
        return {events.metadata["dataset"]: {"tagged_mass": mass, "n_jets": n_jets, "n_tagged": n_tagged}}

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator
