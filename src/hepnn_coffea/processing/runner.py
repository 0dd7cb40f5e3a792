"""Run processors with coffea: ``processor.Runner`` (virtual arrays) or dask-awkward.

``run_runner`` uses coffea 2026's main path: ``processor.Runner`` with
``BaseSchema`` and one of the executors ``dask`` (a ``distributed`` LocalCluster
with ``workers`` processes, or an existing scheduler by address), ``futures`` or
``iterative``. ``run_dask`` uses ``coffea.dataset_tools.preprocess`` +
``apply_to_fileset``. Both split files into the same entry ranges for the same
``chunksize`` (``ceil(entries / chunksize)`` equal steps).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator
from typing import Any

from coffea import processor
from coffea.nanoevents import BaseSchema

from hepnn_coffea.processing.processor import PARTITIONS_KEY

log = logging.getLogger(__name__)
EXECUTORS = ("dask", "futures", "iterative")


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` if given, else on a new LocalCluster.

    The LocalCluster runs ``workers`` processes with one thread each, so numerical
    libraries are not oversubscribed.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _coffea_fileset(fileset: dict[str, Any]) -> dict[str, Any]:
    return {name: {"files": dict(d["files"]), "metadata": dict(d["metadata"])} for name, d in fileset.items()}


def run_runner(
    fileset: dict[str, Any],
    proc: processor.ProcessorABC,
    *,
    executor: str = "dask",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 100_000,
    client: Any = None,
    schema: Any = BaseSchema,
) -> Any:
    """Run ``proc`` over a normalised fileset with ``processor.Runner``; returns the accumulator.

    ``schema`` is the NanoEvents schema of the events handed to ``proc`` (``BaseSchema``: flat
    branches; ``NanoAODSchema`` for an analysis processor working on collections).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {EXECUTORS}")
    if executor == "dask" and client is None:
        with dask_client(workers, scheduler) as new_client:
            return run_runner(
                fileset, proc, executor=executor, chunksize=chunksize, client=new_client, schema=schema
            )
    if executor == "dask":
        exe = processor.DaskExecutor(client=client, status=False)
    elif executor == "futures":
        exe = processor.FuturesExecutor(workers=workers, status=False)
    else:
        exe = processor.IterativeExecutor(status=False)
    # a fresh metadata cache: coffea's default one is process-global and keeps the dataset metadata
    # (e.g. a changed weight) of an earlier run over the same file
    runner = processor.Runner(
        executor=exe, schema=schema, chunksize=chunksize, skipbadfiles=False, metadata_cache={}
    )
    return runner(_coffea_fileset(fileset), proc)


def run_dask(
    fileset: dict[str, Any],
    proc: processor.ProcessorABC,
    *,
    chunksize: int = 100_000,
    workers: int = 2,
    scheduler: str | None = None,
    client: Any = None,
) -> dict[str, Any]:
    """Run ``proc`` with ``preprocess`` + ``apply_to_fileset``; returns the accumulated output.

    The partitions of every dataset are recorded in its metadata (``hepnn_partitions``)
    so chunk-level outputs (shards) get the same deterministic names as under the Runner.
    """
    import dask
    from coffea.dataset_tools import apply_to_fileset, preprocess

    if client is None and (scheduler or workers > 1):
        with dask_client(workers, scheduler) as new_client:
            return run_dask(fileset, proc, chunksize=chunksize, client=new_client)
    available, _ = preprocess(
        _coffea_fileset(fileset),
        step_size=chunksize,
        align_clusters=False,
        skip_bad_files=False,
        save_form=False,
    )
    available = copy.deepcopy(available)
    for dataset in available.values():
        dataset["metadata"][PARTITIONS_KEY] = [
            (file, spec["object_path"], int(start), int(stop))
            for file, spec in dataset["files"].items()
            for start, stop in spec["steps"]
        ]
    missing = set(fileset) - set(available)
    if missing:
        raise RuntimeError(f"coffea preprocess returned no steps for datasets {sorted(missing)}")
    graphs = apply_to_fileset(proc, available, schemaclass=BaseSchema)
    (outputs,) = dask.compute(graphs)
    return processor.accumulate(outputs.values())


def run_processor(
    fileset: dict[str, Any],
    proc: processor.ProcessorABC,
    *,
    mode: str = "runner",
    executor: str = "dask",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 100_000,
) -> Any:
    """Run ``proc`` through ``processor.Runner`` (``mode="runner"``) or dask-awkward (``"dask"``)."""
    if mode == "dask":
        return run_dask(fileset, proc, chunksize=chunksize, workers=workers, scheduler=scheduler)
    if mode != "runner":
        raise ValueError(f"unknown mode {mode!r}; use 'runner' or 'dask'")
    return run_runner(
        fileset, proc, executor=executor, workers=workers, scheduler=scheduler, chunksize=chunksize
    )
