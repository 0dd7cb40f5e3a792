"""The one shape of every evaluation flow: an evaluation processor, a summary, one writer.

Every flow (flat-jet classifier and regression ``infer``/``evaluate``, event-level NanoAOD,
per-point energy regression, hit clustering) goes through the same three steps:

1. **process**: a subclass of :class:`EvaluationProcessor` (a coffea ``ProcessorABC``, through
   :class:`~hepnn_coffea.processing.processor.ChunkProcessor`) turns each chunk into an
   accumulatable ``{"hists": {...}, "counts": {sample: {...}}, ...}`` (plus a per-entry ``table``
   or flow-specific sums). Every hist's category axis of the input sample is named
   :data:`SAMPLE_AXIS` (made by :func:`sample_axis`) and, where several methods are compared
   in one hist (model and baselines, learned and classical clustering), their axis is
   :data:`METHOD_AXIS` (:func:`method_axis`);
2. **summarize**: a pure function of the accumulated output (or of the ``infer`` folder it was
   written to) returns an :class:`EvaluationSummary`: the metrics, each ``{"value", "low",
   "high"}`` where an interval is quoted, and a ``report`` function giving the Markdown blocks
   (paragraphs and :class:`Table` objects) of the summary;
3. **write**: :func:`write_summary` writes ``summary.json`` and ``summary.md`` (atomically;
   the Markdown by the one renderer, :func:`render_markdown`), then, given a ``plots`` callable,
   makes the figures, lists them under ``plots`` and writes the summary again.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from hepnn_coffea.processing.processor import ChunkInfo, ChunkProcessor

__all__ = [
    "METHOD_AXIS",
    "SAMPLE_AXIS",
    "Block",
    "EvaluationProcessor",
    "EvaluationSummary",
    "Table",
    "cell",
    "jsonable",
    "method_axis",
    "render_markdown",
    "sample_axis",
    "write_summary",
]

#: Name of the category axis of the input sample (dataset or physics process) in every evaluation hist.
SAMPLE_AXIS = "process"
#: Name of the category axis of the compared methods (model, baselines, naive estimates) in every
#: evaluation hist.
METHOD_AXIS = "estimator"


def sample_axis(label: str = "Sample") -> Any:
    """A growing string category axis named :data:`SAMPLE_AXIS`."""
    import hist

    return hist.axis.StrCategory([], growth=True, name=SAMPLE_AXIS, label=label)


def method_axis(methods: Sequence[str] = (), label: str = "Estimator") -> Any:
    """A string category axis named :data:`METHOD_AXIS`: fixed ``methods``, or growing when none are given."""
    import hist

    return hist.axis.StrCategory(list(methods), growth=not methods, name=METHOD_AXIS, label=label)


class EvaluationProcessor(ChunkProcessor):
    """Base of the evaluation processors of every flow.

    Subclasses implement ``columns`` and ``process_chunk`` (see
    :class:`~hepnn_coffea.processing.processor.ChunkProcessor`, which runs them under
    ``processor.Runner`` and dask-awkward and turns unreadable chunks into skip records) and
    return ``{"hists": {name: hist.Hist}, "counts": {sample: {counter: number}}, ...}``, the hists
    with the axes :data:`SAMPLE_AXIS` / :data:`METHOD_AXIS`. ``kind`` names the flow; it is the
    :attr:`EvaluationSummary.kind` of the flow's summary.
    """

    kind: ClassVar[str] = ""

    @staticmethod
    def sample(chunk: ChunkInfo) -> str:
        """The chunk's sample: its dataset's ``sample`` metadata, else the dataset name."""
        return chunk.metadata.get("sample", chunk.dataset)


@dataclasses.dataclass(frozen=True)
class Table:
    """One Markdown table of a summary.

    Attributes
    ----------
    columns
        Header cells.
    rows
        Rows of cells: intervals (``{"value", "low", "high"}``), numbers, strings or ``None``
        (see :func:`cell`).
    float_format
        Format of the plain floats in the cells.
    """

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    float_format: str = ".4g"


#: A block of the Markdown report: a paragraph (one or more lines) or a table.
Block = str | Table


def cell(value: Any, float_format: str = ".4g") -> str:
    """One table cell: an interval as ``value +high -low``, ``-`` for None, floats in ``float_format``."""
    from hepnn_coffea.evaluation.intervals import format_interval

    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return format_interval(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_, int, np.integer)):
        return str(value)
    return format(value, float_format)


def render_markdown(blocks: Iterable[Block]) -> str:
    """The Markdown of a report: blocks separated by a blank line, a newline at the end."""
    parts = []
    for block in blocks:
        if isinstance(block, Table):
            lines = ["| " + " | ".join(block.columns) + " |", "|" + "---|" * len(block.columns)]
            lines += [
                "| " + " | ".join(cell(v, block.float_format) for v in row) + " |" for row in block.rows
            ]
            parts.append("\n".join(lines))
        else:
            parts.append(block)
    return "\n\n".join(parts) + "\n"


Report = Callable[[Mapping[str, Any]], list[Block]]


class EvaluationSummary(dict):
    """The summary of an evaluation flow: the content of ``summary.json`` (a dict) and its report.

    The mapping holds the flow's metrics (every quoted uncertainty as a ``{"value", "low",
    "high"}`` interval), its tables as data and, once :func:`write_summary` made them, the
    ``plots`` (paths). It is a dict, so callers read it as the flow's summary always was.

    Parameters
    ----------
    data
        The summary's content (JSON-able).
    kind
        The flow: ``classifier``, ``regression``, ``events``, ``per_point`` or ``clustering``.
    report
        The Markdown blocks of a summary of this kind (a module-level function, so the summary pickles).
    """

    def __init__(self, data: Mapping[str, Any] = (), *, kind: str, report: Report) -> None:
        super().__init__(data)
        self.kind = kind
        self.report = report

    @property
    def plots(self) -> list[str]:
        """Paths of the figures (empty before they are made)."""
        return list(self.get("plots", []))

    def blocks(self) -> list[Block]:
        """The report's paragraphs and tables."""
        return self.report(self)

    def markdown(self) -> str:
        """The text of ``summary.md`` (:func:`render_markdown` of :meth:`blocks`)."""
        return render_markdown(self.blocks())


def jsonable(obj: Any) -> Any:
    """Arrays to lists, NaN/inf to None, numpy scalars to Python, mapping keys to strings; recursively."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj.item() if isinstance(obj, np.generic) else obj


def write_summary(
    summary: EvaluationSummary,
    out_dir: str | pathlib.Path,
    *,
    plots: Callable[[], Iterable[Any]] | None = None,
) -> EvaluationSummary:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir`` (each atomically); returns ``summary``.

    With ``plots`` (a callable making the figures and returning their paths), the summary is
    written first (a failing figure leaves it), then the paths are listed under ``plots`` and
    the summary is written again.
    """
    from hepnn_coffea.processing.shards import atomic_write_bytes, write_json

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "summary.json", summary)
    text = summary.markdown().encode()
    atomic_write_bytes(out / "summary.md", lambda f: f.write(text))
    if plots is not None:
        summary["plots"] = [str(p) for p in plots()]
        write_json(out / "summary.json", summary)
    return summary
