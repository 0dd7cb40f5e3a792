"""Bad input files: up-front validation, per-chunk read guard, and the record of what was lost.

Two places find a bad file:

* :func:`validate_files`, before any processing, opens every file of the fileset with uproot
  (:func:`~hepnn_coffea.processing.fileset.num_entries` and
  :func:`~hepnn_coffea.processing.fileset.branches_of`): not a ROOT file, a tree that does
  not exist, a file lacking a branch the stage reads.
* :func:`read_chunk`, inside every processor's ``process()``
  (:class:`~hepnn_coffea.processing.processor.ChunkProcessor`), reads the chunk's columns
  before any computation: a truncated file or a corrupt basket fails here, for that chunk only.

Every loss is one *skip record*::

    {"dataset", "file", "tree", "entry_start", "entry_stop", "entries_lost", "cause"}

``entry_start``/``entry_stop`` are the chunk's range (the whole file, ``0`` to its entries, for
a file dropped up front); ``entries_lost`` is ``entry_stop - entry_start``, or ``None`` (and
``entry_stop`` ``None``) when the file cannot even tell how many entries it has (not ROOT, no
such tree). By default (``skip=False``) a bad file or chunk ends the stage with
:class:`BadInputError` naming file, entry range and cause (a file found up front stops it before
any processing; a chunk found while reading is reported when the run's other chunks are done, so
one run lists every bad chunk, and no output is written); with ``skip=True`` the stage
finishes and lists the records in its output (``manifest.json`` / ``counts.json``), and
its count reconciliation accounts for ``entries_lost``. Read errors of type ``OSError``
(network, remote storage) are retried ``retries`` times per chunk or file first.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

from hepnn_coffea.processing.fileset import FilesetError, branches_of, num_entries

log = logging.getLogger(__name__)
T = TypeVar("T")

#: exception types retried as transient (network or storage hiccups)
TRANSIENT = (OSError,)
#: seconds waited before retry number ``n`` is ``RETRY_WAIT * n``
RETRY_WAIT = 0.5
#: accumulator key of the skip records returned by the processors
SKIPPED_KEY = "skipped"


class BadInputError(RuntimeError):
    """A file or chunk of the fileset cannot be read (message: file, tree, entry range, cause)."""


@dataclasses.dataclass(frozen=True)
class BadFilePolicy:
    """What a stage does with a file or chunk it cannot read.

    Attributes
    ----------
    skip
        Finish without it and record it (``--skip-bad-files``); otherwise stop with
        :class:`BadInputError`.
    retries
        Extra attempts for transient (``OSError``-type) read errors, per chunk or file.
    """

    skip: bool = False
    retries: int = 0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


class CheckedFileset(NamedTuple):
    """Result of :func:`validate_files`."""

    fileset: dict[str, Any]
    """The datasets with only their readable files (datasets left without files are dropped)."""
    skipped: list[dict[str, Any]]
    """Skip records of the dropped files."""
    entries: dict[str, int]
    """Entries of every file that could be counted (kept and dropped), by path."""
    branches: dict[str, set[str]]
    """Top-level branch names of every file that could be opened, by path (so callers need not reopen it)."""


def with_retries(func: Callable[[], T], retries: int, where: str = "") -> T:
    """``func()``, retried up to ``retries`` times while it raises a :data:`TRANSIENT` error.

    The cause is looked for along the exception chain (``FilesetError`` wraps uproot's ``OSError``).
    """
    attempt = 0
    while True:
        try:
            return func()
        except Exception as err:
            if attempt >= retries or not _is_transient(err):
                raise
            attempt += 1
            log.warning("%s: %s: %s; retry %d of %d", where, type(err).__name__, err, attempt, retries)
            time.sleep(RETRY_WAIT * attempt)


def _is_transient(err: BaseException) -> bool:
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, TRANSIENT):
            return True
        seen = seen.__cause__
    return False


def skip_record(
    dataset: str, file: str, tree: str, start: int, stop: int | None, cause: str
) -> dict[str, Any]:
    """One skip record (``entries_lost`` is None when ``stop`` is unknown)."""
    return {
        "dataset": dataset,
        "file": file,
        "tree": tree,
        "entry_start": int(start),
        "entry_stop": None if stop is None else int(stop),
        "entries_lost": None if stop is None else int(stop) - int(start),
        "cause": cause,
    }


def describe_cause(err: BaseException, retries: int = 0) -> str:
    """``Type: message`` of an exception (first line of a long one), with the retries made."""
    text = " ".join(str(err).split())
    text = text if len(text) <= 300 else text[:297] + "..."
    tried = (
        f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries and _is_transient(err) else ""
    )
    return f"{type(err).__name__}: {text}{tried}"


def validate_files(
    fileset: dict[str, Any],
    needed: Iterable[str],
    *,
    skip: bool = False,
    retries: int = 0,
    needed_by: str = "",
) -> CheckedFileset:
    """Open every file of a normalised fileset; drop (``skip``) or report the bad ones.

    Parameters
    ----------
    fileset
        Normalised fileset (:func:`~hepnn_coffea.processing.fileset.load_fileset`).
    needed
        Branches (TTree) or fields (RNTuple) the stage reads from every file.
    skip
        Drop bad files and return their skip records; otherwise raise.
    retries
        Extra attempts to open a file after a transient (``OSError``-type) error.
    needed_by
        Who reads ``needed``, for the missing-branch message (e.g. the data config).

    Raises
    ------
    FilesetError
        Without ``skip``: a file is not ROOT, cannot be opened, or lacks the tree.
    ConfigError
        Without ``skip``: a file lacks a needed branch (message: branch, file, tree, dataset).
    """
    from hepnn_coffea.config.data_config import ConfigError

    needed = sorted(set(needed))
    good: dict[str, Any] = {}
    skipped: list[dict[str, Any]] = []
    entries: dict[str, int] = {}
    branch_sets: dict[str, set[str]] = {}
    for name, dataset in fileset.items():
        kept = {}
        for file, tree in dataset["files"].items():
            try:
                n = with_retries(lambda file=file, tree=tree: num_entries(file, tree), retries, file)
                branches = with_retries(lambda file=file, tree=tree: branches_of(file, tree), retries, file)
            except FilesetError as err:
                if not skip:
                    raise
                cause = describe_cause(err.__cause__ or err, retries)
                skipped.append(skip_record(name, file, tree, 0, None, f"cannot open the tree: {cause}"))
                continue
            entries[file] = n
            branch_sets[file] = branches
            missing = [b for b in needed if b not in branches]
            if missing:
                if not skip:
                    raise ConfigError(
                        f"branch(es) {missing} not found in {file} (tree '{tree}', dataset '{name}')"
                        + (f"; {needed_by}" if needed_by else "")
                    )
                skipped.append(skip_record(name, file, tree, 0, n, f"missing branch(es) {missing}"))
                continue
            kept[file] = tree
        if kept:
            good[name] = {**dataset, "files": kept}
    for record in skipped:
        log.warning("skipping %s", where(record))
    return CheckedFileset(good, skipped, entries, branch_sets)


def read_chunk(read: Callable[[], T], retries: int) -> T:
    """``read()`` with retries; an error is re-raised as :class:`UnreadableChunk`."""
    try:
        return with_retries(read, retries)
    except Exception as err:
        raise UnreadableChunk(describe_cause(err, retries)) from err


class UnreadableChunk(Exception):
    """A chunk's columns could not be read (the message is the cause); handled inside ``process()``."""


def materialize(events: Any, columns: Iterable[str]) -> Any:
    """Read ``columns`` of a chunk of virtual (lazily read) events now, so read errors surface here.

    The read buffers stay cached in ``events``: later accesses do not read again.
    """
    import awkward as ak

    fields = set(getattr(events, "fields", ()))
    for column in columns:
        if column in fields:
            ak.materialize(events[column])
    return events


def read_partition(file: str, tree: str, start: int, stop: int, columns: list[str]) -> Any:
    """One partition of the dask path: ``columns`` of ``tree`` in ``[start, stop)``, read with uproot."""
    import uproot

    with uproot.open(file) as f:
        return f[tree].arrays(filter_name=list(columns), entry_start=start, entry_stop=stop, library="ak")


def where(record: dict[str, Any]) -> str:
    """Human-readable location and cause of a skip record."""
    stop = "?" if record["entry_stop"] is None else record["entry_stop"]
    lost = "unknown" if record["entries_lost"] is None else record["entries_lost"]
    return (
        f"{record['file']} (tree '{record['tree']}', entries {record['entry_start']}-{stop}, dataset "
        f"'{record['dataset']}'; entries lost: {lost}): {record['cause']}"
    )


def settle(records: list[dict[str, Any]], policy: BadFilePolicy, stage: str) -> list[dict[str, Any]]:
    """The skip records of a run, sorted; raise :class:`BadInputError` unless the policy skips.

    Processors never raise for an unreadable chunk (an exception would cross coffea's executors
    as a traceback): they return a record, and the stage settles them here after the run.
    """
    records = sorted(records, key=lambda r: (r["dataset"], r["file"], r["entry_start"]))
    if records and not policy.skip:
        listed = "; ".join(where(r) for r in records[:10])
        more = f"; and {len(records) - 10} more" if len(records) > 10 else ""
        raise BadInputError(
            f"{len(records)} chunk(s) could not be read: {listed}{more}. Rerun {stage} with --skip-bad-files "
            f"(skip_bad_files=True) to finish without them; they are then listed with the entries lost"
        )
    return records


def lost_by_file(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Entries lost per file path (records with unknown losses count 0)."""
    out: dict[str, int] = {}
    for r in records:
        out[r["file"]] = out.get(r["file"], 0) + (r["entries_lost"] or 0)
    return out


def summary(records: list[dict[str, Any]], entries_in_files: int, entries_read: int) -> dict[str, Any]:
    """Totals of a run with skipped input; raises ``ReconciliationError`` if they do not add up.

    ``entries_in_files`` counts every file of the fileset whose entries could be counted;
    ``entries_read`` the entries the processors read; then ``read + lost == in_files``. Files
    whose entries are unknown (not ROOT, no such tree) are listed in ``unknown_files`` and
    counted in neither.
    """
    from hepnn_coffea.processing.preprocess import ReconciliationError

    lost = sum(r["entries_lost"] or 0 for r in records)
    unknown = sorted({r["file"] for r in records if r["entries_lost"] is None})
    out = {
        "entries_in_files": int(entries_in_files),
        "entries_read": int(entries_read),
        "entries_lost": int(lost),
        "unknown_files": unknown,
    }
    if entries_read + lost != entries_in_files:
        raise ReconciliationError(
            f"{entries_read} entries read + {lost} lost in skipped chunks != "
            f"{entries_in_files} entries in the files"
        )
    return out
