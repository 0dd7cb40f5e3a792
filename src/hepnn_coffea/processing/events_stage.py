"""Cross-section weights and the manifest of event-level preprocessing (files are checked in ``bad_files``).

Per dataset ``xsec_scale = xsec * lumi / sum(genWeight)`` (``xsec`` in pb and the
generated ``sumw`` from the fileset metadata; ``sumw`` is summed from the files'
``genWeight`` when the metadata lacks it; ``lumi`` in pb^-1 from the data config's
``rows.lumi``). Every row then carries ``xsec_weight = genWeight * xsec_scale``.

The manifest keeps the ``splits`` layout of the flat-jet workflow (so training reads
it unchanged) and adds ``cutflow``: per dataset, events read (reconciled with the
files' entries), jets, jets selected, matched per class, unmatched per reason and
written per split, with ``jets = not selected + filtered + unmatched + written``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import uproot

from hepnn_coffea.config.data_config import DataConfig
from hepnn_coffea.config.rows_config import SPLIT_NAMES
from hepnn_coffea.processing.fileset import FilesetError, num_entries
from hepnn_coffea.processing.preprocess import ReconciliationError, manifest_header


def add_event_weights(files: dict[str, Any], config: DataConfig) -> None:
    """Put ``xsec_scale`` (and ``sumw`` when computed from the files) in every dataset's metadata."""
    for name, dataset in files.items():
        meta = dataset["metadata"]
        if "xsec" not in meta:
            raise FilesetError(
                f"dataset '{name}': metadata has no 'xsec' (pb), needed for the event weights "
                f"of a data config with 'rows' ({config.source})"
            )
        try:
            xsec = float(meta["xsec"])
        except (TypeError, ValueError):
            raise FilesetError(
                f"dataset '{name}': metadata xsec must be a number, got {meta['xsec']!r}"
            ) from None
        if "sumw" in meta:
            sumw = float(meta["sumw"])
            meta["sumw_source"] = "metadata"
        else:
            sumw = sum(_sum_gen_weight(file, tree) for file, tree in dataset["files"].items())
            meta["sumw"], meta["sumw_source"] = sumw, "files"
        if not sumw > 0:
            raise FilesetError(f"dataset '{name}': sum of genWeight is {sumw}; cannot normalise the weights")
        meta["xsec_scale"] = xsec * config.rows.lumi / sumw


def _sum_gen_weight(file: str, tree: str) -> float:
    try:
        with uproot.open(file) as f:
            t = f[tree]
            if "genWeight" not in t.keys():
                return float(t.num_entries)
            return float(np.sum(t["genWeight"].array(library="np"), dtype=np.float64))
    except Exception as err:
        raise FilesetError(f"{file}: cannot read genWeight of '{tree}': {type(err).__name__}: {err}") from err


def build_event_manifest(
    files: dict[str, Any],
    config: DataConfig,
    chunks: list[dict[str, Any]],
    cutflow: list[dict[str, Any]],
    run_info: dict[str, Any],
    skipped: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The manifest (``splits`` as in the flat workflow, plus the reconciled ``cutflow``).

    ``skipped``: records of the chunks that could not be read (see :func:`reconcile_cutflow`).
    """
    splits: dict[str, dict[str, Any]] = {s: {} for s in SPLIT_NAMES}
    for c in chunks:
        meta = files[c["dataset"]]["metadata"]
        entry = splits[c["split"]].setdefault(
            c["sample"],
            {
                "datasets": [],
                "shards": [],
                "entries_out": 0,
                "events": 0,
                "process": meta["process"],
                "xsec_scale": meta["xsec_scale"],
            },
        )
        if c["dataset"] not in entry["datasets"]:
            entry["datasets"].append(c["dataset"])
        entry["entries_out"] += c["entries_out"]
        entry["events"] += c["events"]
        entry["shards"].append(
            {
                "path": c["shard"],
                "entries": c["entries_out"],
                "file": c["file"],
                "entry_start": c["entry_start"],
                "entry_stop": c["entry_stop"],
                "label_counts": c["label_counts"],
            }
        )
    for samples in splits.values():
        for entry in samples.values():
            counts = [s["label_counts"] for s in entry["shards"] if s["label_counts"] is not None]
            entry["label_counts"] = np.sum(counts, axis=0).tolist() if counts else None
    written = {(c["dataset"], s): 0 for c in chunks for s in SPLIT_NAMES}
    for c in chunks:
        written[(c["dataset"], c["split"])] += c["entries_out"]
    manifest = manifest_header(config, run_info)
    manifest["workflow"] = "events"
    manifest["rows"] = config.rows.to_dict()
    manifest["splits"] = {s: v for s, v in splits.items() if v}
    manifest["cutflow"] = reconcile_cutflow(files, cutflow, written, skipped)
    return manifest


def reconcile_cutflow(
    files: dict[str, Any],
    records: list[dict[str, Any]],
    written: dict[tuple[str, str], int],
    skipped: list[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Sum the chunk cutflows per dataset and check that every count adds up.

    ``skipped`` are the records of chunks that could not be read (``--skip-bad-files``): their
    events are ``events_lost``, and events read + events lost = the files' entries.

    Raises
    ------
    ReconciliationError
        Events read differ from the files' entries, or jets are not all accounted for.
    """
    out: dict[str, Any] = {}
    for name, dataset in files.items():
        mine = [r for r in records if r["dataset"] == name]
        flow: dict[str, Any] = {
            "process": dataset["metadata"]["process"],
            "xsec_scale": dataset["metadata"]["xsec_scale"],
            "events_in_files": 0,
            "events": 0,
            "jets": 0,
            "jets_selected": 0,
            "events_lost": sum(r["entries_lost"] or 0 for r in skipped if r["dataset"] == name),
            "filtered": {},
            "matched": {},
            "unmatched": {},
            "jets_written": 0,
            "written": {s: written.get((name, s), 0) for s in SPLIT_NAMES},
        }
        for file, tree in dataset["files"].items():
            flow["events_in_files"] += num_entries(file, tree)
        for r in mine:
            for key in ("events", "jets", "jets_selected", "jets_written"):
                flow[key] += r[key]
            for key in ("filtered", "matched", "unmatched"):
                for k, v in (r.get(key) or {}).items():
                    flow[key][k] = flow[key].get(k, 0) + v
            for k, v in r.items():
                if k.startswith("nonfinite_"):
                    flow[k] = flow.get(k, 0) + v
        where = f"dataset '{name}'"
        if flow["events"] + flow["events_lost"] != flow["events_in_files"]:
            raise ReconciliationError(
                f"{where}: read {flow['events']} events (+ {flow['events_lost']} lost in skipped "
                f"chunks) but the files hold {flow['events_in_files']}"
            )
        accounted = (flow["jets"] - flow["jets_selected"]) + sum(flow["filtered"].values())
        accounted += sum(flow["unmatched"].values()) + flow["jets_written"]
        if accounted != flow["jets"] or sum(flow["written"].values()) != flow["jets_written"]:
            raise ReconciliationError(
                f"{where}: {flow['jets']} jets but the cutflow accounts for {accounted} "
                f"(not selected, filtered {flow['filtered']}, unmatched {flow['unmatched']}, "
                f"written {flow['written']})"
            )
        if flow["matched"] and sum(flow["matched"].values()) != flow["jets_written"]:
            raise ReconciliationError(
                f"{where}: matched {flow['matched']} do not add up to {flow['jets_written']} written"
            )
        out[name] = flow
    return out
