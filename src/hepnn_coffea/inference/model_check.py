"""Checks of an ONNX model file before onnxruntime or the feature code touches it.

A model file is untrusted input: someone else's export can carry tensors whose
*external data* onnxruntime would read from any path (``/etc/...``,
``../../secret``), and metadata whose embedded data config holds expressions.
:func:`check_onnx_file` runs before the onnxruntime session is created and

- requires every external-data ``location`` to be a relative path to an existing
  file inside the model's folder (no absolute paths, ``..``, symlinks leaving
  the folder, onnxruntime's in-memory marker);
- validates the ``hepnn_coffea.*`` metadata (:func:`parse_metadata`: known keys,
  types) and the embedded data config (its expressions are checked against the
  allow-list of :mod:`hepnn_coffea.features.allowlist`).

Errors are :class:`~hepnn_coffea.inference.tagger.TaggerError` naming the file
and the tensor or metadata key.
"""

from __future__ import annotations

import json
import pathlib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from hepnn_coffea._optional import require
from hepnn_coffea.config.training_config import TASKS  # the tasks a model can be trained for
from hepnn_coffea.export.metadata import META_PREFIX  # prefix of hepnn_coffea's metadata keys

#: longest accepted metadata value (characters)
MAX_METADATA_CHARS = 4_000_000
#: most nodes of a metadata value once YAML anchors/aliases are expanded
MAX_METADATA_NODES = 200_000
#: onnxruntime reads tensor data from a raw memory address for this location
_ORT_MEMORY_MARKER = "_ORT_MEM_ADDR_"


class ModelCheckWarning(UserWarning):
    """A check could not run (``onnx`` is not installed)."""


def _error(message: str) -> Exception:
    from hepnn_coffea.inference.tagger import TaggerError  # lazy: tagger imports this module

    return TaggerError(message)


# --------------------------------------------------------------------- metadata
def _nodes(value: Any, memo: dict[int, int]) -> int:
    """Node count of ``value`` with shared (aliased) containers counted at every use."""
    if not isinstance(value, (dict, list)):
        return 1
    if id(value) not in memo:
        memo[id(value)] = 0  # a cycle counts as small here; yaml.safe_load makes none for mappings
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        memo[id(value)] = 1 + sum(_nodes(k, memo) + _nodes(v, memo) for k, v in items)
    return memo[id(value)]


def _yaml_mapping(text: str, where: str) -> dict[str, Any]:
    try:
        value = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError) as err:
        raise _error(f"{where} is not valid YAML: {err}") from None
    if not isinstance(value, dict):
        raise _error(f"{where} must be a YAML mapping, got {type(value).__name__}")
    try:
        nodes = _nodes(value, {})
    except RecursionError:
        nodes = MAX_METADATA_NODES + 1
    if nodes > MAX_METADATA_NODES:
        raise _error(f"{where} expands to more than {MAX_METADATA_NODES} YAML nodes")
    return value


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise _error(f"{where} is not valid JSON: {err}") from None


def _str_list(text: str, where: str) -> list[str]:
    value = _json(text, where)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _error(f"{where} must be a JSON list of strings, got {text[:80]!r}")
    return value


def _json_mapping(text: str, where: str) -> dict[str, Any]:
    value = _json(text, where)
    if not isinstance(value, dict):
        raise _error(f"{where} must be a JSON mapping, got {type(value).__name__}")
    return value


def _task(text: str, where: str) -> str:
    if text not in TASKS:
        raise _error(f"{where} must be one of {list(TASKS)}, got {text[:80]!r}")
    return text


#: metadata key (without the prefix) -> parser and validator of its value
METADATA_KEYS = {
    "data_config": _yaml_mapping,
    "classes": _str_list,
    "task": _task,
    "input_groups": _str_list,
    "provenance": _json_mapping,
    "experts": _json_mapping,
}


def parse_metadata(props: Mapping[str, str] | list[tuple[str, str]], where: str) -> dict[str, Any]:
    """The parsed ``hepnn_coffea.*`` metadata of a model (other keys are ignored).

    Raises :class:`~hepnn_coffea.inference.tagger.TaggerError` naming ``where`` and the key for an
    unknown or repeated key, an oversized value, or a value of the wrong type.
    """
    items = list(props.items()) if isinstance(props, Mapping) else list(props)
    out: dict[str, Any] = {}
    for key, value in items:
        if not key.startswith(META_PREFIX):
            continue
        name, label = key[len(META_PREFIX) :], f"{where}: metadata '{key}'"
        if name not in METADATA_KEYS:
            known = [META_PREFIX + k for k in METADATA_KEYS]
            raise _error(f"{where}: unknown metadata key '{key}' (known: {known})")
        if name in out:
            raise _error(f"{label} appears more than once")
        if not isinstance(value, str) or len(value) > MAX_METADATA_CHARS:
            raise _error(f"{label} is not a string of at most {MAX_METADATA_CHARS} characters")
        out[name] = METADATA_KEYS[name](value, label)
    return out


# ----------------------------------------------------------------- external data
def _graph_tensors(graph: Any, where: str) -> Iterator[tuple[str, Any]]:
    for tensor in graph.initializer:
        yield f"{where} initializer '{tensor.name}'", tensor
    for sparse in graph.sparse_initializer:
        yield f"{where} sparse initializer '{sparse.values.name}'", sparse.values
        yield f"{where} sparse initializer '{sparse.values.name}' indices", sparse.indices
    yield from _node_tensors(graph.node, where)


def _node_tensors(nodes: Any, where: str) -> Iterator[tuple[str, Any]]:
    for node in nodes:
        for attr in node.attribute:
            label = f"{where} node '{node.name or node.op_type}' attribute '{attr.name}'"
            if attr.HasField("t"):
                yield label, attr.t
            yield from ((label, t) for t in attr.tensors)
            if attr.HasField("sparse_tensor"):
                yield label, attr.sparse_tensor.values
                yield label, attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield label, sparse.values
                yield label, sparse.indices
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g, f"{label} subgraph")
            for i, g in enumerate(attr.graphs):
                yield from _graph_tensors(g, f"{label} subgraph {i}")


def model_tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """Every tensor of an ONNX ``ModelProto`` (graph, subgraphs, functions, training info) with a label."""
    yield from _graph_tensors(model.graph, "graph")
    for function in model.functions:
        yield from _node_tensors(function.node, f"function '{function.name}'")
    for i, info in enumerate(model.training_info):
        yield from _graph_tensors(info.initialization, f"training_info[{i}] initialization")
        yield from _graph_tensors(info.algorithm, f"training_info[{i}] algorithm")


def check_location(path: pathlib.Path, label: str, location: str) -> None:
    """``location`` (of tensor ``label`` in model ``path``) must name a file inside the model's folder."""
    folder = path.resolve().parent
    where = f"{path}: {label} has external data at {location!r}"
    pure = pathlib.PurePosixPath(location)
    if not location or "\x00" in location or "\\" in location or ":" in location:
        raise _error(f"{where}: not a plain relative path")
    if pure.is_absolute() or ".." in pure.parts or _ORT_MEMORY_MARKER in location:
        raise _error(f"{where}: external data must be a relative path inside the model's folder {folder}")
    target = (folder / pure).resolve()
    if not target.is_relative_to(folder):
        raise _error(f"{where}: it resolves to {target}, outside the model's folder {folder}")
    if not target.is_file():
        raise _error(f"{where}: no such file in the model's folder")


def check_onnx_file(path: str | pathlib.Path) -> dict[str, Any]:
    """Check a model file before use (see the module docstring); returns its parsed metadata.

    Without ``onnx`` installed only a warning is issued; the metadata is then checked when read
    (:func:`hepnn_coffea.export.metadata.read_metadata`).
    """
    path = pathlib.Path(path)
    try:
        onnx = require("onnx")
    except ImportError:
        warnings.warn(
            f"{path}: 'onnx' is not installed, external data references of the model are not checked",
            ModelCheckWarning,
            stacklevel=2,
        )
        return {}
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises its own DecodeError types
        raise _error(f"{path}: not a readable ONNX model: {type(err).__name__}: {err}") from err
    for label, tensor in model_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            entries = {e.key: e.value for e in tensor.external_data}
            check_location(path, label, entries.get("location", ""))
    meta = parse_metadata([(p.key, p.value) for p in model.metadata_props], str(path))
    if "data_config" in meta:
        from hepnn_coffea.config.data_config import ConfigError, DataConfig

        try:
            DataConfig.from_dict(meta["data_config"], source=f"{path} (embedded data config)")
        except ConfigError as err:
            raise _error(str(err)) from err
    return meta


def check_branch_map(path: str | pathlib.Path, branch_map: Mapping[str, str]) -> None:
    """Every ``branch_map`` value must be an allowed expression; the error names the branch."""
    from hepnn_coffea.features.expressions import Expression, ExpressionError

    for branch, expression in branch_map.items():
        try:
            Expression(str(expression))
        except ExpressionError as err:
            raise _error(f"{path}: branch_map['{branch}']: {err}") from err
