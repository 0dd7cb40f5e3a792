"""The evaluation processor of event-level models (a data config with ``rows:``).

Each chunk of NanoAOD events becomes one row per fat jet with the same code as
preprocessing (:func:`hepnn_coffea.processing.events_processor.event_rows`), the rows
passing the model's ``test_time_selection`` are scored, and the per-jet table gets the
columns of the ``hepnn infer`` contract: ``sample``, ``process``, ``run``, ``event``,
``luminosityBlock``, ``fatjet_index``, ``split``, ``label`` (true class name or
``unmatched``), ``weight`` (``genWeight * xsec * lumi / sumw``), the jet observables
and ``score_<class>``. Hists per process (weighted) come from
:mod:`hepnn_coffea.evaluation.events_eval`. The processor is an
:class:`~hepnn_coffea.evaluation.protocol.EvaluationProcessor` (the protocol of every evaluation flow).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepnn_coffea.config.rows_config import SPLIT_NAMES
from hepnn_coffea.config.variations_config import VariationsConfig
from hepnn_coffea.evaluation.protocol import EvaluationProcessor
from hepnn_coffea.features.compute import compute_features
from hepnn_coffea.inference.tagger import OnnxTagger, report_fixups
from hepnn_coffea.processing.processor import ChunkInfo

#: jet observables copied into the per-jet table (when the config's rows provide them)
TABLE_OBSERVABLES = ("pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2", "tau3", "nConstituents")
UNMATCHED = "unmatched"


class EventTaggerProcessor(EvaluationProcessor):
    """Scores every selected jet of NanoAOD events with an event-level :class:`OnnxTagger`.

    Parameters
    ----------
    tagger
        A classifier exported from a run on ``rows:`` shards.
    split
        Only rows of events in this split (``train``/``val``/``test``, the event hash of the
        model's data config); all rows when None.
    with_truth
        Compute generator-matched labels (needs the ``GenPart`` branches); otherwise every
        row of a signal process is ``unmatched``.
    variations
        Systematic variations of the rows' ``PFCand_*`` fields (or a declared layout), scored in the
        same pass: the hists get a leading ``variation`` axis (``nominal`` first) and the output a
        ``variation_table`` (the table columns of every other variation, plus ``variation``).
        The nominal is computed exactly as without variations.
    """

    kind = "events"

    def __init__(
        self,
        tagger: OnnxTagger,
        *,
        split: str | None = None,
        with_truth: bool = True,
        variations: VariationsConfig | None = None,
    ) -> None:
        config = tagger.config
        if config.rows is None or not config.is_classification:
            raise ValueError(
                f"{tagger.path}: EventTaggerProcessor needs a classifier with a 'rows' data config"
            )
        if split is not None and split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of {SPLIT_NAMES}, got {split!r}")
        self.tagger = tagger
        self.split = split
        self.with_truth = with_truth and config.rows.gen_match is not None
        prefix = config.rows.jet_prefix
        self.observables = [f"{prefix}{f}" for f in TABLE_OBSERVABLES]
        self.variations = variations if variations is not None and variations.define else None
        self.vary = None
        if self.variations is not None:
            from hepnn_coffea.evaluation.variations import VariationPass

            branches = config.required_branches("test_time_selection", inputs_only=True)
            self.vary = VariationPass(self.variations, branches, config.new_variables)

    def row_names(self) -> list[str]:
        """Row fields read: model inputs, selection, observables, event ids, labels."""
        rows = self.tagger.config.rows
        names = self.tagger.config.required_branches("test_time_selection", inputs_only=True)
        names += self.observables + [rows.index_field, "xsec_weight"]
        names += [e for e in ("run", "luminosityBlock", "event") if e in rows.event_fields]
        if self.with_truth:
            names += list(self.tagger.config.label_names)
        if self.vary is not None:
            names += sorted(self.vary.extra_branches())
        return list(dict.fromkeys(names))

    def columns(self) -> list[str]:
        return self.tagger.config.rows.file_branches(self.row_names())

    def _evaluate(self, source: Any, rows: Any, where: str) -> dict[str, Any]:
        """Features and scores of the rows of ``source`` (``rows`` or a varied copy) passing the selection."""
        batch = compute_features(
            source, self.tagger.config, selection="test_time_selection", with_labels=False, where=where
        )
        report_fixups(batch.counts, where)
        kept = rows[batch.selected]
        return {
            "batch": batch,
            "scores": self.tagger.predict(batch.inputs),
            "kept": kept,
            "weight": np.asarray(kept["xsec_weight"], dtype=np.float64),
        }

    def _table(self, r: dict[str, Any], sample: str, process: str) -> dict[str, np.ndarray]:
        config, kept = self.tagger.config, r["kept"]
        n = len(kept)
        table: dict[str, np.ndarray] = {
            "sample": np.full(n, sample, dtype=object),
            "process": np.full(n, process, dtype=object),
            "run": np.asarray(kept["run"]),
            "luminosityBlock": np.asarray(kept["luminosityBlock"]),
            "event": np.asarray(kept["event"]),
            config.rows.index_field: np.asarray(kept[config.rows.index_field]),
            "split": np.asarray(SPLIT_NAMES, dtype=object)[np.asarray(kept["split"])],
            "label": self._labels(kept, n),
            "weight": r["weight"],
        }
        for name in self.observables:
            table[name] = np.asarray(kept[name])
        for i, cls in enumerate(self.tagger.classes):
            table[f"score_{cls}"] = r["scores"][:, i]
        return table

    def process_chunk(self, events: Any, chunk: ChunkInfo) -> dict[str, Any]:
        from hepnn_coffea.evaluation.events_eval import fill_event_hists, make_event_hists
        from hepnn_coffea.processing.events_processor import event_rows

        classes = list(self.tagger.classes)
        rows, n_events = event_rows(events, self.tagger.config, chunk, self.row_names())
        n_jets = len(rows)
        if self.split is not None:
            rows = rows[np.asarray(rows["split"]) == SPLIT_NAMES.index(self.split)]
        nominal = self._evaluate(rows, rows, chunk.where)
        batch = nominal["batch"]
        sample = self.sample(chunk)
        process = str(chunk.metadata.get("process", sample))
        table = self._table(nominal, sample, process)
        hists = fill_event_hists(make_event_hists(classes), table)
        counts = {
            sample: {
                "events": n_events,
                "jets": n_jets,
                "jets_in_split": len(rows),
                "jets_scored": len(table["weight"]),
                **{k: v for k, v in batch.counts.items() if k.startswith("nonfinite_")},
            }
        }
        out = {"hists": hists, "table": {k: [v] for k, v in table.items()}, "counts": counts}
        if self.vary is not None:
            from hepnn_coffea.evaluation.variation_hists import stack_variations

            parts, varied = {"nominal": hists}, {}
            fields = {name: rows[name] for name in rows.fields}
            evaluate = lambda f, w: self._evaluate(f, rows, w)  # noqa: E731
            for name, r in self.vary.run(
                fields, chunk, sample, nominal, evaluate=evaluate, selected=batch.selected
            ):
                rows_v = self._table(r, sample, process)
                parts[name] = fill_event_hists(make_event_hists(classes), rows_v)
                for key, values in {
                    "variation": np.full(len(rows_v["weight"]), name, dtype=object),
                    **rows_v,
                }.items():
                    varied.setdefault(key, []).append(values)
            out["hists"], out["variation_table"] = stack_variations(parts), varied
        return out

    def _labels(self, kept: Any, n: int) -> np.ndarray:
        """True class name per row (``unmatched`` when no class field is 1)."""
        labels = np.full(n, UNMATCHED, dtype=object)
        if self.with_truth:
            for cls in self.tagger.config.label_names:
                labels[np.asarray(kept[cls]) == 1] = cls
        return labels
