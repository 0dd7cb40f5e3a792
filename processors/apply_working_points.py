"""An analysis that tags jets at the working points of ``hepnn working-points`` (a correctionlib JSON).

The thresholds come from the JSON through coffea's correctionlib support
(:class:`coffea.lookup_tools.correctionlib_wrapper`), evaluated on the jets' pT (jagged or
flat, eager, virtual or dask arrays); a jet is tagged when its discriminant is at or above
the threshold. The processor fills, per dataset, the pT of the scored jets (those passing the
model's test-time selection) and of the tagged jets per working point, so ``tagged / jets`` is
the tagging efficiency of the dataset::

    hepnn working-points OUT/scores.parquet --background-efficiency 0.01 0.05 -o wp.json
    proc = WorkingPointAnalysis("model.onnx", "wp.json")                 # flat jet trees
    proc = WorkingPointAnalysis("model.onnx", "wp.json", collection="FatJet")  # NanoAOD
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import hist
import numpy as np
from coffea import processor

from hepnn_coffea import OnnxTagger
from hepnn_coffea.evaluation.working_points import discriminant_values, signals

_SETS: dict[str, Any] = {}


def load_correction(path: str, name: str) -> Any:
    """``correctionlib_wrapper`` of correction ``name`` of the JSON at ``path`` (one parse per process)."""
    import correctionlib
    from coffea.lookup_tools.correctionlib_wrapper import correctionlib_wrapper

    if path not in _SETS:
        _SETS[path] = correctionlib.CorrectionSet.from_file(path)
    return correctionlib_wrapper(_SETS[path][name])


class WorkingPointAnalysis(processor.ProcessorABC):
    """pT of the scored jets and of the jets tagged at each working point, per dataset.

    Parameters
    ----------
    model
        The ONNX model the working points were derived for.
    working_points
        The correctionlib JSON of ``hepnn working-points``.
    discriminant
        Its signal class (default: the first discriminant, e.g. ``top`` or ``jet_isTop``).
    binned
        Thresholds per pT bin (correction ``<discriminant>_pt``) or global (``<discriminant>_global``).
    collection
        ``None``: the events are jets (flat trees, pT field ``pt_field``); else the NanoAOD
        collection scored with :meth:`OnnxTagger.fatjets` (its ``pt``).
    pt_field
        The jets' pT field in flat trees.
    """

    def __init__(
        self,
        model: str,
        working_points: str | pathlib.Path,
        *,
        discriminant: str | None = None,
        binned: bool = True,
        collection: str | None = None,
        pt_field: str = "jet_pt",
    ) -> None:
        self.tagger = OnnxTagger(model)
        self.path = str(pathlib.Path(working_points).resolve())
        corrections = {c["name"]: c for c in json.loads(pathlib.Path(self.path).read_text())["corrections"]}
        self.discriminant = discriminant or signals(self.tagger.classes)[0]
        self.correction = f"{self.discriminant}_{'pt' if binned else 'global'}"
        if self.correction not in corrections:
            raise ValueError(
                f"{self.path} has no correction '{self.correction}' (it has {sorted(corrections)})"
            )
        self.points = [item["key"] for item in corrections[self.correction]["data"]["content"]]
        self.collection, self.pt_field = collection, pt_field

    def process(self, events: Any) -> dict[str, Any]:
        is_dask = type(events).__module__.startswith("dask_awkward")
        if is_dask:
            import dask_awkward as lib
            from hist.dask import Hist
        else:
            import awkward as lib
            from hist import Hist
        if self.collection is None:
            scores, pt = self.tagger(events), events[self.pt_field]
        else:
            scores, pt = self.tagger.fatjets(events), events[self.collection].pt
        disc = discriminant_values(scores, self.discriminant, self.tagger.classes)
        thresholds = load_correction(self.path, self.correction)
        axis = hist.axis.Regular(40, 0.0, 2000.0, name="pt", label="Jet $p_T$ [GeV]")
        jets = Hist(axis, storage=hist.storage.Weight())
        tagged = Hist(
            hist.axis.StrCategory(self.points, name="wp", label="Working point"),
            axis,
            storage=hist.storage.Weight(),
        )
        jets.fill(pt=lib.flatten(pt[np.isfinite(disc)], axis=None))  # the jets the tagger scored
        for wp in self.points:
            passed = disc >= thresholds(wp, pt)  # <- the working point, from the correctionlib JSON
            tagged.fill(wp=wp, pt=lib.flatten(pt[passed], axis=None))
        return {events.metadata.get("dataset", "events"): {"jets": jets, "tagged": tagged}}

    def postprocess(self, accumulator: Any) -> Any:
        return accumulator
