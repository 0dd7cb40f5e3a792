"""Preprocessing step of histogram reweighting: train shards -> ``weights.reweight_hists``.

Runs after the shards and the manifest are written (weaver-core does this in its
``WeightMaker`` and stores the result in ``*.auto.yaml``). Writes::

    OUT/data_config.yaml      the data config with weights.reweight_hists filled in
    OUT/reweight_hists.json   edges, per-class factors, raw counts, entries used
"""

from __future__ import annotations

import copy
import json
import logging
import pathlib
from typing import Any

import numpy as np

from hepnn_coffea.config.data_config import ConfigError, DataConfig
from hepnn_coffea.config.weights_config import WeightsConfig
from hepnn_coffea.processing.shards import MANIFEST, OBSERVER_PREFIX, open_shard, write_json
from hepnn_coffea.training.reweight import reweight_details, reweight_factors

log = logging.getLogger(__name__)
REWEIGHT_JSON = "reweight_hists.json"


def read_train_columns(
    out_dir: str | pathlib.Path, names: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Observers ``names`` and the labels of every train shard listed in the manifest.

    Returns
    -------
    tuple
        ``({name: values}, labels)``.
    """
    out = pathlib.Path(out_dir)
    manifest = json.loads((out / MANIFEST).read_text())
    samples = manifest["splits"].get("train") or {}
    paths = [s["path"] for entry in samples.values() for s in entry["shards"] if s["entries"]]
    if not paths:
        raise ConfigError(f"{out}: weights.reweight_method needs train entries, but the train split is empty")
    columns: dict[str, list[np.ndarray]] = {n: [] for n in names}
    labels = []
    for path in paths:
        shard = open_shard(out / path)
        for name in names:
            if OBSERVER_PREFIX + name not in shard.fields:
                raise ConfigError(f"{out / path}: no observer '{name}' for the reweighting")
            columns[name].append(np.asarray(shard.column(OBSERVER_PREFIX + name), dtype=np.float64))
        labels.append(shard.column("label"))
    return {n: np.concatenate(v) for n, v in columns.items()}, np.concatenate(labels)


def write_reweighting(out_dir: str | pathlib.Path, config: DataConfig, *, remake: bool = False) -> DataConfig:
    """Compute the reweighting histograms on the train shards and store them.

    Parameters
    ----------
    out_dir
        The preprocessing output folder (with ``manifest.json`` and the shards).
    config
        The data config the shards were written with (``weights.reweight_method`` set,
        ``use_precomputed_weights: false``).
    remake
        Recompute even when the config already carries ``reweight_hists`` (weaver reuses them).

    Returns
    -------
    DataConfig
        The config with ``weights.reweight_hists`` (also written to ``out_dir/data_config.yaml``).
    """
    out = pathlib.Path(out_dir)
    wcfg = WeightsConfig.from_dict(config.weights, config.source, config.label_names)
    if wcfg is None or not wcfg.is_reweighting:
        raise ConfigError(f"{config.source}: weights: no histogram reweighting configured (reweight_method)")
    names = [*wcfg.var_names, *([wcfg.basewgt_name] if wcfg.basewgt_name else [])]
    values, labels = read_train_columns(out, names)
    base = values.pop(wcfg.basewgt_name) if wcfg.basewgt_name else None
    result = reweight_details(values, labels, config.label_names, wcfg, base)
    hists = result.hists
    if wcfg.reweight_hists is not None and not remake:
        log.info("%s: weights.reweight_hists given in the config; kept (as weaver-core does)", config.source)
        hists = wcfg.hist_arrays()
    factors = reweight_factors(values, labels, config.label_names, wcfg, hists, base_weights=base)
    raw = copy.deepcopy(config.to_dict())
    raw["weights"]["reweight_hists"] = {k: np.asarray(v).tolist() for k, v in hists.items()}
    updated = DataConfig.from_dict(raw, source=config.source)
    (out / "data_config.yaml").write_text(updated.to_yaml())
    write_json(out / REWEIGHT_JSON, _summary(wcfg, result, hists, factors, labels, config.label_names))
    log.info(
        "reweighting (%s) on %d train entries: %d used, %d get factor 0; written to %s",
        wcfg.reweight_method,
        result.entries_total,
        result.entries_used,
        int((factors == 0).sum()),
        out,
    )
    return updated


def _summary(
    wcfg: WeightsConfig,
    result: Any,
    hists: dict[str, Any],
    factors: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
) -> dict[str, Any]:
    """The readable ``reweight_hists.json`` payload."""
    expected = {
        k: float(np.sum(result.weighted_counts[k] * np.asarray(hists[k]))) for k in wcfg.reweight_classes
    }
    total = sum(expected.values()) or 1.0
    return {
        "method": wcfg.reweight_method,
        "vars": {name: list(edges) for name, edges in wcfg.reweight_vars},
        "classes": list(wcfg.reweight_classes),
        "class_weights": list(wcfg.class_weights),
        "reweight_threshold": wcfg.reweight_threshold,
        "reweight_discard_under_overflow": wcfg.reweight_discard_under_overflow,
        "reweight_basewgt": wcfg.reweight_basewgt,
        "hists": {k: np.asarray(v).tolist() for k, v in hists.items()},
        "raw_counts": {k: v.astype(np.int64).tolist() for k, v in result.raw_counts.items()},
        **(
            {"weighted_counts": {k: v.tolist() for k, v in result.weighted_counts.items()}}
            if wcfg.reweight_basewgt
            else {}
        ),
        "entries_total": result.entries_total,
        "entries_used": result.entries_used,
        "rows_factor_zero": {
            name: int(((labels == i) & (factors == 0)).sum()) for i, name in enumerate(label_names)
        },
        "expected_class_fractions": {k: v / total for k, v in expected.items()},
    }
