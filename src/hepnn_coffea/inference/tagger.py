"""Run an exported model on events inside any coffea processor.

:class:`OnnxTagger` reads the data config embedded in the ONNX file, computes
the features with the same code as preprocessing
(:func:`hepnn_coffea.features.compute_features`), and runs onnxruntime. It works
on eager awkward arrays, coffea virtual arrays (``processor.Runner``) and
dask-awkward arrays (``map_partitions`` with the output form derived from the
ONNX signature: the model never runs at graph-build time).

onnxruntime sessions live in a per-process cache: a worker deserialises the
model once and reuses the session for every chunk; the tagger object itself
pickles as its path and options only.
"""

from __future__ import annotations

import os
import pathlib
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from hepnn_coffea._optional import require
from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.export.metadata import EXPERT_INPUT, read_metadata
from hepnn_coffea.features.compute import compute_features
from hepnn_coffea.features.expressions import Expression, VariableTable
from hepnn_coffea.inference.model_check import check_branch_map, check_onnx_file
from hepnn_coffea.inference.weaver import load_weaver_config, restrict_inputs

_SESSIONS: dict[tuple[Any, ...], Any] = {}
_LOCK = threading.Lock()


def _session(path: str, threads: int) -> Any:
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size, threads, os.getpid())
    with _LOCK:
        if key not in _SESSIONS:
            ort = require("onnxruntime")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            _SESSIONS[key] = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]


def clear_session_cache() -> None:
    """Forget the cached onnxruntime sessions of this process."""
    with _LOCK:
        _SESSIONS.clear()


class NonFiniteInputWarning(UserWarning):
    """Model inputs had NaN/inf values that were replaced by 0 (weaver's ``nan_to_num``)."""


def report_fixups(counts: Mapping[str, int], where: str) -> dict[str, int]:
    """Warn about (and return) the ``nonfinite_<var>`` counts of a feature batch."""
    fixed = {k[len("nonfinite_") :]: v for k, v in counts.items() if k.startswith("nonfinite_") and v}
    if fixed:
        warnings.warn(f"{where}: NaN/inf inputs replaced by 0: {fixed}", NonFiniteInputWarning, stacklevel=3)
    return fixed


class TaggerError(ValueError):
    """The model file or the events do not fit together."""


def _check_inputs(path: str, inputs: list[Any], config: DataConfig) -> None:
    """Model inputs must be config input groups of matching shape ``(N, n_vars, length)``."""
    names = [i.name for i in inputs]
    unknown = [n for n in names if n not in config.inputs]
    if unknown:
        raise TaggerError(
            f"{path}: model inputs {unknown} are not input groups of the data config {config.source} "
            f"(it has {list(config.inputs)}; the model wants {names})"
        )
    for i in inputs:
        group, shape = config.inputs[i.name], list(i.shape or [])
        expected = [len(group.vars), group.length]
        for axis, want in zip((1, 2), expected):
            fixed = len(shape) > axis and isinstance(shape[axis], int)
            if fixed and want is not None and shape[axis] != want:
                raise TaggerError(
                    f"{path}: input '{i.name}' has shape {shape} but the data config gives "
                    f"{len(group.vars)} variables x length {group.length}"
                )


class OnnxTagger:
    """Scores from an exported hepnn_coffea (or weaver-core + config) ONNX model.

    Parameters
    ----------
    path
        The ONNX file.
    data_config
        Data config to use instead of the embedded one, required for a weaver-core
        ``--export-onnx`` file (no metadata): a :class:`DataConfig`, weaver's data-config
        YAML (the ``*.auto.yaml`` with the computed standardization) or its
        ``preprocess.json`` (see :func:`~hepnn_coffea.inference.weaver.load_weaver_config`).
        The model's inputs are matched to the config's input groups by name.
    branch_map
        ``{model_branch: field_or_expression}`` for events whose branches are named or built
        differently, e.g. ``{"part_px": "cand_px"}`` or
        ``{"jet_energy": "_p4_from_ptetaphim(pt, eta, phi, mass).energy"}``.
    intra_op_threads
        onnxruntime threads per worker process (default 1: one per dask worker core).
    batch_size
        Jets per onnxruntime call (bounds memory: ParticleNet needs ~6 MB per jet).

    Examples
    --------
    >>> tagger = OnnxTagger("model.onnx")                       # doctest: +SKIP
    >>> events["tagger"] = tagger(events)                          # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | pathlib.Path,
        *,
        data_config: str | pathlib.Path | DataConfig | None = None,
        branch_map: Mapping[str, str] | None = None,
        intra_op_threads: int = 1,
        batch_size: int = 512,
    ) -> None:
        self.path = str(pathlib.Path(path).resolve())
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        check_onnx_file(self.path)  # before onnxruntime: external data paths, metadata, embedded config
        check_branch_map(self.path, branch_map or {})
        self.intra_op_threads = int(intra_op_threads)
        self.batch_size = int(batch_size)
        self.branch_map = dict(branch_map or {})
        session = _session(self.path, self.intra_op_threads)
        meta = read_metadata(session)
        #: the parsed ``hepnn_coffea.*`` metadata of the file (empty for foreign exports)
        self.metadata = meta
        self.task = str(meta.get("task", "classification"))
        if data_config is not None:
            config = data_config if isinstance(data_config, DataConfig) else load_weaver_config(data_config)
        elif "data_config" in meta:
            config = DataConfig.from_dict(meta["data_config"], source=f"{self.path} (embedded data config)")
        else:
            raise TaggerError(
                f"{self.path} has no embedded hepnn_coffea data config (a weaver-core export?): pass "
                "data_config=<weaver *.auto.yaml, data-config YAML or preprocess.json>"
            )
        self.classes = list(meta.get("classes") or config.label_names)
        groups = [i for i in session.get_inputs() if i.name != EXPERT_INPUT]
        #: the file routes entries to experts (input ``expert_index`` from the config's ``experts``)
        self.routes_experts = len(groups) < len(session.get_inputs())
        if self.routes_experts and config.experts is None:
            raise TaggerError(
                f"{self.path} routes to experts but the data config {config.source} has no 'experts'"
            )
        self.input_names = [i.name for i in groups]
        _check_inputs(self.path, groups, config)
        self.config = restrict_inputs(config, self.input_names)  # only what the model reads
        outputs = session.get_outputs()
        width = outputs[0].shape[-1] if outputs[0].shape else None
        if isinstance(width, int) and width != len(self.classes):
            raise TaggerError(
                f"{self.path}: output has {width} columns but {len(self.classes)} classes are declared"
            )
        prefix = "score" if self.task == "classification" else "pred"
        self.output_fields = [f"{prefix}_{c}" for c in self.classes]
        #: one output per point (``(N, n_targets, P)``): returned jagged, one value per real point
        self.per_point = len(outputs[0].shape or []) == 3
        if self.per_point and (
            self.config.label_pad_to is None or self.config.label_pad_to not in self.config.inputs
        ):
            raise TaggerError(f"{self.path}: per-point outputs need labels.pad_to naming a model input group")

    # -------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    # ------------------------------------------------------------------- API
    def columns(self) -> list[str]:
        """The event fields the model reads (after ``branch_map``)."""
        branches = self.config.required_branches("test_time_selection", inputs_only=True)
        return sorted({name for b in branches for name in self._mapped(b).names})

    def __call__(self, events: Any) -> Any:
        """Scores per entry: a record array with one ``score_<class>`` field per class.

        ``events`` is a table of jets (one entry per jet) or a jagged collection of jets
        per event (e.g. ``events.FatJet`` with constituents attached); the scores have the
        same structure. Entries failing the config's ``test_time_selection`` get NaN
        scores, so the output is always aligned with ``events``.
        """
        if type(events).__module__.startswith("dask_awkward"):
            import dask_awkward as dak

            meta = self._output_typetracer(jagged=events.ndim > 1)
            return dak.map_partitions(self._run, events, meta=meta, label="hepnn-onnx")
        return self._run(events)

    def fatjets(self, events: Any, layout: str | None = None) -> Any:
        """Scores of every jet of the events' collection, in one call (event-level models).

        For a model trained on a ``rows:`` data config (e.g. ``models/data/nanoaod_fatjet.yaml``):
        the jets, their constituents through the layout's index collection (NanoAOD
        ``FatJetPFCand``/PFNano ``FatJetPFCands``) and the event fields are assembled as in
        preprocessing (:func:`hepnn_coffea.events.table.jet_rows`), so an analysis writes::

            events["FatJet", "hepnn"] = tagger.fatjets(events)

        ``events`` are NanoEvents (eager, virtual or dask). The result is ``events x jets``
        records of ``score_<class>``; jets failing the model's ``test_time_selection`` get NaN.
        ``layout`` (``nanoaod`` or ``pfnano``) overrides the training config's, e.g. to run a
        model trained on NanoAOD-style files on PFNano (the row fields are the same).
        """
        import dataclasses

        from hepnn_coffea.config.rows_config import LAYOUTS
        from hepnn_coffea.events.table import jet_rows

        if self.config.rows is None:
            raise TaggerError(
                f"{self.path}: fatjets() needs a model trained on event rows (a data config with "
                "'rows:'); call the tagger on a jet table instead"
            )
        rows = self.config.rows
        if layout is not None:
            if layout not in LAYOUTS:
                raise TaggerError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
            rows = dataclasses.replace(rows, layout=layout)
        names = self.config.required_branches("test_time_selection", inputs_only=True)
        try:
            table = jet_rows(events, rows, names)
        except ValueError as err:
            raise TaggerError(f"{self.path}: {err}") from err
        return self(table)

    def with_scores(self, events: Any, name: str = "hepnn") -> Any:
        """``events`` with the scores added as the record field ``name``."""
        return ak.with_field(events, self(events), name)

    # ------------------------------------------------------------- internals
    def _output_typetracer(self, jagged: bool = False) -> ak.Array:
        column = np.zeros(0, dtype=np.float32)
        if self.per_point:
            column = ak.unflatten(column, np.zeros(0, dtype=np.int64))
        empty = ak.zip({f: column for f in self.output_fields}, depth_limit=1)
        if jagged:
            empty = ak.unflatten(empty, np.zeros(0, dtype=np.int64))
        return ak.Array(empty.layout.to_typetracer(forget_length=True))

    def _mapped(self, branch: str) -> Expression:
        return Expression(self.branch_map.get(branch, branch))

    def source(
        self, events: Any, inputs_only: bool = True, selection: str = "test_time_selection"
    ) -> dict[str, Any]:
        """The model's branches computed from ``events`` by model name.

        ``branch_map`` values are field names of ``events`` or expressions over them
        (same rules as data-config expressions). ``inputs_only=False`` also takes the
        label, observer and weight branches (evaluation); ``selection`` names the
        selection whose branches are needed.
        """
        fields = set(events.fields)
        table = VariableTable(events, {}, where=self.path)
        source = {}
        for branch in self.config.required_branches(selection, inputs_only=inputs_only):
            expr = self._mapped(branch)
            missing = [n for n in expr.names if n not in fields]
            if missing:
                mapped = f" (mapped to {expr.source!r})" if expr.source != branch else ""
                raise TaggerError(
                    f"{self.path}: the model needs branch '{branch}'{mapped} but the events have no field(s) "
                    f"{missing}; pass branch_map={{'{branch}': ...}}"
                )
            source[branch] = (
                events[expr.source] if expr.source in fields else table.evaluate(expr, key=branch)
            )
        return source

    def _run(self, events: Any) -> ak.Array:
        if ak.backend(events) == "typetracer":
            for field in self.columns():
                ak.typetracer.touch_data(events[field])
            return self._output_typetracer(jagged=events.ndim > 1)
        if events.ndim > 1:
            return ak.unflatten(self._run(ak.flatten(events, axis=1)), ak.num(events, axis=1))
        n = len(events)
        batch = (
            compute_features(
                self.source(events),
                self.config,
                selection="test_time_selection",
                with_labels=False,
                where=self.path,
            )
            if n
            else None
        )
        pred = None
        if batch is not None and len(batch):
            report_fixups(batch.counts, self.path)
            pred = self.predict(batch.inputs, expert=batch.expert)
        if self.per_point:
            return self._per_point_output(n, batch, pred)
        scores = np.full((n, len(self.classes)), np.nan, dtype=np.float32)
        if pred is not None:
            scores[batch.selected] = pred
        return ak.zip({f: scores[:, i] for i, f in enumerate(self.output_fields)})

    def _per_point_output(self, n: int, batch: Any, pred: np.ndarray | None) -> ak.Array:
        """Per-point outputs ``(m, n_targets, P)`` as jagged arrays: one value per real point
        (none for unselected entries)."""
        counts = np.zeros(n, dtype=np.int64)
        flat = {f: np.zeros(0, dtype=np.float32) for f in self.output_fields}
        if pred is not None:
            real = batch.lengths.get(self.config.label_pad_to, np.zeros(len(batch), dtype=np.int64))
            counts[batch.selected] = real
            keep = np.arange(pred.shape[-1])[None, :] < real[:, None]
            flat = {f: pred[:, i, :][keep] for i, f in enumerate(self.output_fields)}
        return ak.zip({f: ak.unflatten(v, counts) for f, v in flat.items()}, depth_limit=1)

    def predict(self, inputs: Mapping[str, np.ndarray], expert: np.ndarray | None = None) -> np.ndarray:
        """Run the model on ready inputs (``group -> array``), in batches of ``batch_size``.

        ``expert`` is the expert index of every entry (``FeatureBatch.expert``), needed
        when the file routes to experts.
        """
        session = _session(self.path, self.intra_op_threads)
        n = len(next(iter(inputs.values())))
        if n == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        inputs = dict(inputs)
        if self.routes_experts:
            if expert is None:
                raise TaggerError(
                    f"{self.path} routes to experts: predict() needs the expert index of every entry"
                )
            inputs[EXPERT_INPUT] = np.asarray(expert, dtype=np.int64)
        names = self.input_names + ([EXPERT_INPUT] if self.routes_experts else [])
        parts = []
        for start in range(0, n, self.batch_size):
            feed = {k: np.ascontiguousarray(inputs[k][start : start + self.batch_size]) for k in names}
            parts.append(session.run(None, feed)[0])
        return np.concatenate(parts).astype(np.float32, copy=False)
