"""The preprocessing stage: fileset + data config -> shards + manifest.

Output folder layout::

    OUT/manifest.json          counts per split/sample/file, shard list, config hash
    OUT/data_config.yaml       the data config with standardization values filled in
    OUT/standardization.json   per-variable center/scale/min/max/pad (weaver's *.auto.yaml)
    OUT/<split>/<sample>/*.arrow one shard per chunk (see :mod:`.shards`)
"""

from __future__ import annotations

import datetime
import logging
import pathlib
from typing import Any

import numpy as np

from hepnn_coffea import __version__
from hepnn_coffea.config.data_config import ConfigError, DataConfig
from hepnn_coffea.features.standardize import lengths_from_values, standardization_from_values
from hepnn_coffea.processing import bad_files
from hepnn_coffea.processing.fileset import load_fileset, num_entries, select_split
from hepnn_coffea.processing.processor import ShardWriterProcessor, StandardizationProcessor
from hepnn_coffea.processing.reweight_stage import write_reweighting
from hepnn_coffea.processing.runner import run_processor
from hepnn_coffea.processing.shard_format import FORMAT as SHARD_FORMAT
from hepnn_coffea.processing.shards import MANIFEST, write_json

log = logging.getLogger(__name__)


class ReconciliationError(RuntimeError):
    """Entries read do not add up to the entries in the files."""


def preprocess(
    fileset: str | pathlib.Path | dict[str, Any],
    data_config: str | pathlib.Path | DataConfig,
    out_dir: str | pathlib.Path,
    *,
    mode: str = "runner",
    executor: str = "dask",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 50_000,
    seed: int = 0,
    skip_bad_files: bool = False,
    retries: int = 0,
) -> dict[str, Any]:
    """Compute features of every dataset in ``fileset`` and write shards + manifest.

    Parameters
    ----------
    mode
        ``"runner"`` (``processor.Runner`` with ``executor``) or ``"dask"``
        (``coffea.dataset_tools.preprocess`` + ``apply_to_fileset``).
    executor, workers, scheduler
        See :func:`hepnn_coffea.processing.runner.run_runner`.
    chunksize
        Entries per chunk (and per shard).
    seed
        Seed of the ``data_fraction`` sampling for auto standardization.
    skip_bad_files
        Finish without the files and chunks that cannot be read and list them in the manifest
        (``skipped``, with the entries lost); by default they stop the stage with
        :class:`~hepnn_coffea.processing.bad_files.BadInputError`.
    retries
        Extra attempts per chunk (and file) after a transient (``OSError``-type) read error.

    Returns
    -------
    dict
        The manifest (also written to ``out_dir/manifest.json``).
    """
    config = data_config if isinstance(data_config, DataConfig) else DataConfig.from_yaml(data_config)
    events = config.rows is not None  # event-level NanoAOD: rows built per chunk (processing/events_stage.py)
    files = load_fileset(fileset, config.treename, event_level=events)
    policy = bad_files.BadFilePolicy(skip=skip_bad_files, retries=retries)
    if events:
        from hepnn_coffea.processing import events_processor as ep
        from hepnn_coffea.processing.events_stage import add_event_weights

        needed = config.rows.file_branches(ep.row_names(config))
        why = (
            f"they are read by {config.source} for the rows of collection '{config.rows.collection}' "
            f"(layout '{config.rows.layout}')"
        )
    else:
        needed = config.required_branches()
        why = f"they are read by {config.source}'s inputs/labels/observers/selection"
    checked = bad_files.validate_files(files, needed, skip=skip_bad_files, retries=retries, needed_by=why)
    files = checked.fileset
    if not files:
        raise bad_files.BadInputError(
            "no readable file left: " + "; ".join(map(bad_files.where, checked.skipped))
        )
    if events:
        add_event_weights(files, config)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def run(proc: Any, datasets: dict[str, Any]) -> Any:
        proc.bad_files = policy
        return run_processor(
            datasets,
            proc,
            mode=mode,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            chunksize=chunksize,
        )

    lengths: dict[str, dict[str, Any]] = {}
    standardization_skipped: list[dict[str, Any]] = []
    if config.needs_auto_standardization:
        train = files if events else select_split(files, "train")
        if not train:
            raise ConfigError(f"{config.source}: preprocess.method auto needs at least one 'train' dataset")
        standardizer = ep.EventStandardizationProcessor if events else StandardizationProcessor
        collected = run(standardizer(config, seed), train)
        standardization_skipped = bad_files.settle(
            collected.get(bad_files.SKIPPED_KEY, []), policy, "preprocess"
        )
        collected = collected.get("values", {})
        values = {k: _concat(v) for k, v in collected.items()}
        lengths = lengths_from_values(values, config.length_quantile)
        params = standardization_from_values({k: v for k, v in values.items() if not k.startswith("length:")})
        config = config.with_standardization(params).with_lengths(
            {g: v["length"] for g, v in lengths.items()}
        )
        log.info("auto standardization computed on %s; lengths %s", sorted(params), lengths)
    write_json(out / "standardization.json", config.standardization())
    (out / "data_config.yaml").write_text(config.to_yaml())

    result = run((ep.EventShardWriterProcessor if events else ShardWriterProcessor)(config, str(out)), files)
    chunks = sorted(
        result.get("chunks", []), key=lambda c: (c["split"], c["sample"], c["file"], c["entry_start"])
    )
    lost = bad_files.settle(result.get(bad_files.SKIPPED_KEY, []), policy, "preprocess")
    run_info = {
        "mode": mode,
        "executor": executor,
        "chunksize": chunksize,
        "skip_bad_files": skip_bad_files,
        "retries": retries,
    }
    if events:
        from hepnn_coffea.processing.events_stage import build_event_manifest

        manifest = build_event_manifest(
            files, config, chunks, result.get("cutflow", []), run_info, skipped=lost
        )
        read = sum(r["events"] for r in result.get("cutflow", []))
    else:
        manifest = build_manifest(files, config, chunks, run_info, skipped=lost)
        read = sum(c["entries_in"] for c in chunks)
    manifest["skipped"] = checked.skipped + lost
    manifest["entries"] = bad_files.summary(manifest["skipped"], sum(checked.entries.values()), read)
    if lengths:
        manifest["auto_lengths"] = lengths
    if standardization_skipped:  # chunks the auto-standardization pass could not read
        manifest["standardization_skipped"] = standardization_skipped
    removed = remove_stale_shards(out, {c["shard"] for c in chunks})
    if removed:
        log.warning("removed %d shard(s) of an earlier run that this run did not produce", removed)
    write_json(out / MANIFEST, manifest)
    if (
        config.weights
        and config.weights.get("reweight_method")
        and not config.weights.get("use_precomputed_weights")
    ):
        write_reweighting(
            out, config
        )  # weights.reweight_hists into OUT/data_config.yaml (weaver's WeightMaker)
    return manifest


def _concat(arrays: list[Any]) -> Any:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)


def build_manifest(
    files: dict[str, Any],
    config: DataConfig,
    chunks: list[dict[str, Any]],
    run_info: dict[str, Any],
    skipped: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Summarise chunk records per split/sample and reconcile entries with uproot.

    ``skipped`` are the records of chunks that could not be read (``--skip-bad-files``): per
    file, entries read + ``entries_lost`` = the file's entries.
    """
    splits: dict[str, dict[str, Any]] = {}
    lost = bad_files.lost_by_file(skipped)
    for dataset_name, dataset in files.items():
        meta = dataset["metadata"]
        entry = splits.setdefault(meta["split"], {}).setdefault(
            meta["sample"], {"datasets": [], "files": {}, "shards": [], "weight": meta["weight"]}
        )
        entry["datasets"].append(dataset_name)
        for file, tree in dataset["files"].items():
            entry["files"][file] = {
                "tree": tree,
                "num_entries": num_entries(file, tree),
                "entries_read": 0,
                "entries_selected": 0,
                "rejected_labels": 0,
                "entries_out": 0,
                "entries_lost": lost.get(file, 0),
            }
    for c in chunks:
        entry = splits[c["split"]][c["sample"]]
        stats = entry["files"][c["file"]]
        stats["entries_read"] += c["entries_in"]
        for key in ("entries_selected", "rejected_labels", "entries_out"):
            stats[key] += c[key]
        for key, value in c.items():
            if key.startswith(("nonfinite_", "filtered_")):
                stats[key] = stats.get(key, 0) + value
        entry["shards"].append(
            {
                "path": c["shard"],
                "entries": c["entries_out"],
                "file": c["file"],
                "entry_start": c["entry_start"],
                "entry_stop": c["entry_stop"],
                "label_counts": c["label_counts"],
                "expert_counts": c.get("expert_counts"),
            }
        )
    for split, samples in splits.items():
        for sample, entry in samples.items():
            for file, stats in entry["files"].items():
                if stats["entries_read"] + stats["entries_lost"] != stats["num_entries"]:
                    raise ReconciliationError(
                        f"{file}: read {stats['entries_read']} entries "
                        f"(+ {stats['entries_lost']} lost in skipped chunks) "
                        f"but uproot reports {stats['num_entries']} (split {split}, sample {sample})"
                    )
            for key in (
                "num_entries",
                "entries_read",
                "entries_lost",
                "entries_selected",
                "rejected_labels",
                "entries_out",
            ):
                entry[key] = sum(s[key] for s in entry["files"].values())
            filtered = sorted({k for s in entry["files"].values() for k in s if k.startswith("filtered_")})
            if filtered:
                entry["filtered"] = {
                    k[len("filtered_") :]: sum(s.get(k, 0) for s in entry["files"].values()) for k in filtered
                }
            _check_cutflow(entry, f"split {split}, sample {sample}")
            experts = [s["expert_counts"] for s in entry["shards"] if s.get("expert_counts")]
            if experts:
                entry["expert_counts"] = np.sum(experts, axis=0).tolist()
    manifest = manifest_header(config, run_info)
    manifest["splits"] = splits
    return manifest


def manifest_header(config: DataConfig, run_info: dict[str, Any]) -> dict[str, Any]:
    """The manifest fields every workflow shares (format, versions, config, inputs, labels)."""
    return {
        "format": SHARD_FORMAT,
        "hepnn_coffea_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config_hash": config.config_hash(),
        "data_config": "data_config.yaml",
        "standardization": config.standardization(),
        "inputs": {g.name: g.var_names for g in config.inputs.values()},
        "label_type": config.label_type,
        "labels": config.label_names,
        "observers": config.observers,
        "filters": [f.to_dict() for f in config.filters],
        "experts": config.experts.to_dict() if config.experts is not None else None,
        "run": run_info,
    }


def _check_cutflow(entry: dict[str, Any], where: str) -> None:
    """Entries read = not selected + filtered + rejected labels + written."""
    accounted = (entry["entries_read"] - entry["entries_selected"]) + sum(
        (entry.get("filtered") or {}).values()
    )
    accounted += entry["rejected_labels"] + entry["entries_out"]
    if accounted != entry["entries_read"]:
        raise ReconciliationError(
            f"{where}: {entry['entries_read']} entries read but the cutflow accounts for {accounted} "
            f"(selection, filters {entry.get('filtered') or {}}, label rejection, written)"
        )


def remove_stale_shards(out: pathlib.Path, keep: set[str]) -> int:
    """Delete shards (``*.arrow``, and padded ``*.npy`` of format ``/1``) under the split folders not in
    ``keep``."""
    removed = 0
    for split_dir in (out / s for s in ("train", "val", "test")):
        paths = [*split_dir.glob("*/*.arrow"), *split_dir.glob("*/*.npy")] if split_dir.is_dir() else []
        for path in paths:
            if path.relative_to(out).as_posix() not in keep:
                path.unlink()
                removed += 1
    return removed
