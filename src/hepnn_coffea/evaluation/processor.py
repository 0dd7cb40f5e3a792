"""The evaluation processors of ``infer``: scores per jet, hists per sample, and a per-jet table.

Both are :class:`~hepnn_coffea.evaluation.protocol.EvaluationProcessor` subclasses (the protocol
of every evaluation flow); their hists' sample axis is ``process``, the regression estimators' ``estimator``.
"""

from __future__ import annotations

from typing import Any

import hist
import numpy as np

from hepnn_coffea.config.variations_config import VariationsConfig
from hepnn_coffea.evaluation.protocol import EvaluationProcessor, sample_axis
from hepnn_coffea.features.compute import compute_features
from hepnn_coffea.inference.tagger import OnnxTagger, report_fixups
from hepnn_coffea.processing.processor import ChunkInfo

SCORE_BINS = 1000


def make_histograms(
    classes: list[str],
    mass_axis: tuple[int, float, float],
    pt_axis: tuple[int, float, float],
    mass_label: str,
    pt_label: str,
    variations: list[str] | None = None,
) -> dict[str, hist.Hist]:
    """Empty hists: score per class, and the signal score vs mass and vs pt (weighted storage).

    ``variations``: names of a leading ``variation`` axis (``nominal`` first); none by default.
    """
    from hepnn_coffea.evaluation.variation_hists import variation_axis

    sample = [sample_axis()]
    if variations:
        sample.insert(0, variation_axis(variations))
    truth = hist.axis.StrCategory(classes, name="truth", label="True class")
    return {
        "score": hist.Hist(
            *sample,
            truth,
            hist.axis.StrCategory(classes, name="output", label="Score of class"),
            hist.axis.Regular(SCORE_BINS, 0, 1, name="score", label="Score"),
            storage=hist.storage.Weight(),
        ),
        "score_vs_mass": hist.Hist(
            *sample,
            truth,
            hist.axis.Regular(50, 0, 1, name="score", label=f"{classes[0]} score"),
            hist.axis.Regular(*mass_axis, name="mass", label=mass_label),
            storage=hist.storage.Weight(),
        ),
        "score_vs_pt": hist.Hist(
            *sample,
            truth,
            hist.axis.Regular(SCORE_BINS, 0, 1, name="score", label=f"{classes[0]} score"),
            hist.axis.Regular(*pt_axis, name="pt", label=pt_label),
            storage=hist.storage.Weight(),
        ),
    }


class TaggerEvaluationProcessor(EvaluationProcessor):
    """Runs an :class:`OnnxTagger` on labelled events and fills evaluation hists.

    Output (accumulated over chunks): ``hists`` (see :func:`make_histograms`), ``table``
    (``sample``, ``score_<class>``, the label branches and the observers, one entry per
    selected jet), and ``counts`` per sample (entries read / scored).

    With ``variations`` the hists get a leading ``variation`` axis (``nominal`` first, one model
    evaluation per constituent variation in the same chunk pass) and the output a
    ``variation_table``: the ``table`` columns of every variation but the nominal, plus ``variation``.
    The nominal is computed exactly as without variations.

    Parameters
    ----------
    tagger
        The model.
    mass_branch, pt_branch
        Branches for the sculpting (score vs mass) and score vs pt hists.
    mass_axis, pt_axis
        ``(bins, low, high)`` of those axes.
    variations
        Systematic variations (:class:`~hepnn_coffea.config.variations_config.VariationsConfig`).
    """

    kind = "classifier"

    def __init__(
        self,
        tagger: OnnxTagger,
        *,
        mass_branch: str = "jet_sdmass",
        pt_branch: str = "jet_pt",
        mass_axis: tuple[int, float, float] = (60, 0.0, 300.0),
        pt_axis: tuple[int, float, float] = (40, 500.0, 700.0),
        variations: VariationsConfig | None = None,
    ) -> None:
        if not tagger.config.is_classification:
            raise ValueError(
                "TaggerEvaluationProcessor evaluates classifiers; the model has regression targets"
            )
        self.tagger = tagger
        self.mass_branch, self.pt_branch = mass_branch, pt_branch
        self.mass_axis, self.pt_axis = mass_axis, pt_axis
        self.variations = variations if variations is not None and variations.define else None
        self.vary = None
        if self.variations is not None:
            from hepnn_coffea.evaluation.variations import VariationPass

            branches = tagger.config.required_branches("test_time_selection")
            self.vary = VariationPass(self.variations, branches, tagger.config.new_variables)

    def columns(self) -> list[str]:
        config = self.tagger.config
        extra = {self.mass_branch, self.pt_branch} | (self.vary.extra_branches() if self.vary else set())
        return sorted(set(config.required_branches("test_time_selection")) | extra)

    def _evaluate(self, source: dict[str, Any], chunk: ChunkInfo, where: str) -> dict[str, Any]:
        """Features, scores and weights of the selected jets of ``source``."""
        batch = compute_features(source, self.tagger.config, selection="test_time_selection", where=where)
        report_fixups(batch.counts, where)
        scores = self.tagger.predict(batch.inputs)
        weight = float(chunk.metadata.get("weight", 1.0)) * (
            batch.weights if batch.weights is not None else 1.0
        )
        weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), (len(batch),))
        return {
            "batch": batch,
            "scores": scores,
            "weight": weight,
            "mass": np.asarray(source[self.mass_branch])[batch.selected],
            "pt": np.asarray(source[self.pt_branch])[batch.selected],
        }

    def _fill(
        self, hists: dict[str, hist.Hist], r: dict[str, Any], sample: str, variation: str | None
    ) -> None:
        classes, scores, weight = self.tagger.classes, r["scores"], r["weight"]
        truth = np.asarray(classes, dtype=object)[r["batch"].labels]
        axis = {} if variation is None else {"variation": variation}
        for i, cls in enumerate(classes):
            hists["score"].fill(
                **axis, process=sample, truth=truth, output=cls, score=scores[:, i], weight=weight
            )
        hists["score_vs_mass"].fill(
            **axis, process=sample, truth=truth, score=scores[:, 0], mass=r["mass"], weight=weight
        )
        hists["score_vs_pt"].fill(
            **axis, process=sample, truth=truth, score=scores[:, 0], pt=r["pt"], weight=weight
        )

    def _table(self, r: dict[str, Any], sample: str) -> dict[str, np.ndarray]:
        batch, scores = r["batch"], r["scores"]
        table = {
            "sample": np.full(len(batch), sample, dtype=object),
            "weight": r["weight"].astype(np.float64),
        }
        for i, cls in enumerate(self.tagger.classes):
            table[f"score_{cls}"] = scores[:, i]
            table[cls] = (batch.labels == i).astype(np.int8)
        table.update(batch.observers)
        return table

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        classes = self.tagger.classes
        source = self.tagger.source(events, inputs_only=False)
        for branch in (self.mass_branch, self.pt_branch):
            source.setdefault(branch, events[branch])
        nominal = self._evaluate(source, chunk, chunk.where)
        batch = nominal["batch"]
        sample = self.sample(chunk)
        names = self.variations.names if self.variations else None
        hists = make_histograms(
            classes, self.mass_axis, self.pt_axis, self.mass_branch, self.pt_branch, names
        )
        self._fill(hists, nominal, sample, names[0] if names else None)
        table = {k: [v] for k, v in self._table(nominal, sample).items()}
        counts = {
            sample: {
                "entries_in": batch.counts["entries_in"],
                "entries_scored": len(batch),
                "rejected_labels": batch.counts["rejected_labels"],
                **{k: v for k, v in batch.counts.items() if k.startswith("nonfinite_")},
            }
        }
        out = {"hists": hists, "table": table, "counts": counts}
        if self.vary is not None:
            fields = {**source, **{b: events[b] for b in self.vary.extra_branches() - set(source)}}
            varied: dict[str, list[np.ndarray]] = {}
            evaluate = lambda f, w: self._evaluate(f, chunk, w)  # noqa: E731
            for name, r in self.vary.run(
                fields, chunk, sample, nominal, evaluate=evaluate, selected=batch.selected
            ):
                self._fill(hists, r, sample, name)
                rows = self._table(r, sample)
                for key, values in {
                    "variation": np.full(len(r["scores"]), name, dtype=object),
                    **rows,
                }.items():
                    varied.setdefault(key, []).append(values)
            out["variation_table"] = varied
        return out


class RegressionEvaluationProcessor(EvaluationProcessor):
    """Runs a regression :class:`OnnxTagger` on events with truth and fills residual hists.

    Entries are those of the data config's training ``selection`` (the truth must exist;
    preprocessing ``filters`` are not applied). Output: ``hists`` (see
    :func:`hepnn_coffea.evaluation.regression.make_regression_hists`; estimators ``model``
    and one per ``naive`` entry), ``table`` (per entry: sample, weight, expert,
    ``true_<t>``, ``pred_<t>``, ``naive_<t>``) and ``counts`` per sample.

    Parameters
    ----------
    tagger
        A regression model (ONNX outputs in physical units; may route to experts).
    binning
        Per target ``{"true": (low, high), "residual": half_range, "relative": bool}``
        (default: from the training mean/std stored in the ONNX file).
    naive
        ``{target: expression}``: a simple estimate to compare with, e.g. ``{"truth_pt": "jet_pt"}``.
    """

    kind = "regression"

    def __init__(
        self,
        tagger: OnnxTagger,
        *,
        binning: dict[str, dict[str, Any]] | None = None,
        naive: dict[str, str] | None = None,
    ) -> None:
        from hepnn_coffea.evaluation.regression import target_binning

        if tagger.config.is_classification:
            raise ValueError("RegressionEvaluationProcessor evaluates regression models; this one classifies")
        self.tagger = tagger
        self.targets = list(tagger.classes)
        self.naive = dict(naive or {})
        unknown = sorted(set(self.naive) - set(self.targets))
        if unknown:
            raise ValueError(
                f"naive estimators for unknown target(s) {unknown}; the targets are {self.targets}"
            )
        if binning is None:
            scaling = (tagger.metadata.get("provenance") or {}).get("target_scaling")
            if not scaling:
                raise ValueError(f"{tagger.path} stores no target scaling: pass binning=...")
            binning = {
                t: target_binning(o, s) for t, o, s in zip(self.targets, scaling["offset"], scaling["scale"])
            }
        self.binning = binning

    def _naive_branches(self) -> set[str]:
        """File branches the naive expressions read (new variables are computed)."""
        from hepnn_coffea.features.expressions import Expression

        names = {n for expr in self.naive.values() for n in Expression(expr).names}
        return names - set(self.tagger.config.new_variables)

    def columns(self) -> list[str]:
        return sorted(set(self.tagger.config.required_branches("selection")) | self._naive_branches())

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        from hepnn_coffea.evaluation.regression import fill_regression, make_regression_hists
        from hepnn_coffea.features.expressions import VariableTable

        config = self.tagger.config
        source = self.tagger.source(events, inputs_only=False, selection="selection")
        batch = compute_features(
            source, config, selection="selection", where=chunk.where, apply_filters=False
        )
        report_fixups(batch.counts, chunk.where)
        pred = self.tagger.predict(batch.inputs, expert=batch.expert)
        sample = self.sample(chunk)
        weight = float(chunk.metadata.get("weight", 1.0)) * (
            batch.weights if batch.weights is not None else 1.0
        )
        weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), (len(batch),))
        expert = (
            None if batch.expert is None else np.asarray(config.experts.names, dtype=object)[batch.expert]
        )
        extra = {n: events[n] for n in self._naive_branches() - set(source)}
        table = VariableTable({**source, **extra}, config.new_variables, chunk.where)
        hists = make_regression_hists(self.binning)
        out: dict[str, list[np.ndarray]] = {
            "sample": [np.full(len(batch), sample, dtype=object)],
            "weight": [weight.astype(np.float64)],
        }
        if expert is not None:
            out["expert"] = [expert]
        for i, target in enumerate(self.targets):
            true = batch.labels[:, i].astype(np.float64)
            estimates = {"model": pred[:, i].astype(np.float64)}
            if target in self.naive:
                naive = np.asarray(
                    table.evaluate(self.naive[target], key=f"naive {target}"), dtype=np.float64
                )
                estimates["naive"] = naive[batch.selected]
            for name, values in estimates.items():
                fill_regression(
                    hists,
                    target,
                    process=sample,
                    estimator=name,
                    true=true,
                    pred=values,
                    weight=weight,
                    expert=expert,
                )
                out[f"{'pred' if name == 'model' else name}_{target}"] = [values]
            out[f"true_{target}"] = [true]
        counts = {
            sample: {
                "entries_in": batch.counts["entries_in"],
                "entries_scored": len(batch),
                **{k: v for k, v in batch.counts.items() if k.startswith("nonfinite_")},
            }
        }
        return {"hists": hists, "table": out, "counts": counts}
