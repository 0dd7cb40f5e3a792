"""Coffea fileset JSON: ``{"sample": {"files": {"path.root": "tree"}, "metadata": {...}}}``.

Dataset metadata understood here:

``split``
    ``train`` (default), ``val`` or ``test``: which shard set the dataset feeds.
``sample``
    Physics sample name (defaults to the dataset name); datasets of the same sample
    in different splits share it (e.g. ``top_train`` and ``top_test`` -> ``top``).
``weight``
    Per-entry weight of the sample for histograms (default 1), or ``xsec`` +
    ``lumi`` + ``sumw`` giving ``xsec * lumi / sumw``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import uproot

SPLITS = ("train", "val", "test")


class FilesetError(ValueError):
    """A fileset is malformed or names a file that cannot be read."""


def load_fileset(
    fileset: str | pathlib.Path | dict[str, Any], treename: str | None = None, event_level: bool = False
) -> dict[str, Any]:
    """Read and normalise a fileset: absolute paths, filled-in metadata, checked files.

    Parameters
    ----------
    fileset
        Path of a JSON file (relative file paths resolve against its folder) or a dict.
    treename
        Tree to use where a dataset lists files without one (the data config's ``treename``).
    event_level
        Datasets of events (a data config with ``rows:``): the split is assigned per event and
        the weight per row (see :mod:`hepnn_coffea.processing.events_stage`), so ``split`` and
        ``weight`` are not filled in here.
    """
    base = pathlib.Path.cwd()
    source = "<dict>"
    if not isinstance(fileset, dict):
        path = pathlib.Path(fileset)
        source, base = str(path), path.resolve().parent
        try:
            fileset = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise FilesetError(f"{path}: cannot read fileset JSON: {err}") from err
    if not isinstance(fileset, dict) or not fileset:
        raise FilesetError(f"{source}: a fileset must be a non-empty mapping of datasets")
    out: dict[str, Any] = {}
    for name, dataset in fileset.items():
        if not isinstance(dataset, dict) or "files" not in dataset:
            raise FilesetError(f"{source}: dataset '{name}' needs a 'files' entry")
        files = dataset["files"]
        if isinstance(files, list):
            files = {f: treename for f in files}
        resolved = {}
        for file, tree in files.items():
            tree = tree if isinstance(tree, str) else (tree or {}).get("object_path", treename)
            if not tree:
                raise FilesetError(f"{source}: dataset '{name}', file {file}: no tree name given")
            fpath = pathlib.Path(file)
            fpath = fpath if fpath.is_absolute() or "://" in file else (base / fpath).resolve()
            if "://" not in file and not fpath.is_file():
                raise FilesetError(f"{source}: dataset '{name}': file not found: {fpath}")
            resolved[file if "://" in file else str(fpath)] = tree  # a URL stays as given (Path drops a '/')
        metadata = dict(dataset.get("metadata") or {})
        metadata.setdefault("sample", name)
        if event_level:
            metadata.setdefault("process", metadata["sample"])
            out[name] = {"files": resolved, "metadata": metadata}
            continue
        metadata.setdefault("split", "train")
        if metadata["split"] not in SPLITS:
            raise FilesetError(
                f"{source}: dataset '{name}': split must be one of {SPLITS}, got {metadata['split']!r}"
            )
        metadata["weight"] = sample_weight(metadata, f"{source}: dataset '{name}'")
        out[name] = {"files": resolved, "metadata": metadata}
    return out


def sample_weight(metadata: dict[str, Any], where: str) -> float:
    """``weight`` if given, else ``xsec * lumi / sumw`` if all given, else 1."""
    if "weight" in metadata:
        return float(metadata["weight"])
    keys = ("xsec", "lumi", "sumw")
    if any(k in metadata for k in keys):
        missing = [k for k in keys if k not in metadata]
        if missing:
            raise FilesetError(
                f"{where}: metadata has {[k for k in keys if k in metadata]} but lacks {missing}"
            )
        if float(metadata["sumw"]) == 0:
            raise FilesetError(f"{where}: metadata sumw is 0")
        return float(metadata["xsec"]) * float(metadata["lumi"]) / float(metadata["sumw"])
    return 1.0


def select_split(fileset: dict[str, Any], split: str | None) -> dict[str, Any]:
    """The datasets of one split (all when ``split`` is None)."""
    return {k: v for k, v in fileset.items() if split is None or v["metadata"]["split"] == split}


def num_entries(file: str, tree: str) -> int:
    """Entries of a TTree or RNTuple, read with uproot (for count reconciliation)."""
    try:
        with uproot.open(file) as f:
            return int(f[tree].num_entries)
    except Exception as err:
        raise FilesetError(f"{file}: cannot read '{tree}': {type(err).__name__}: {err}") from err


def branches_of(file: str, tree: str) -> set[str]:
    """Top-level branch (TTree) or field (RNTuple) names of a file's tree."""
    try:
        with uproot.open(file) as f:
            return set(f[tree].keys(recursive=False))
    except Exception as err:
        raise FilesetError(f"{file}: cannot read '{tree}': {type(err).__name__}: {err}") from err
