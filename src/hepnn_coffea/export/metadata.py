"""What an exported ONNX file carries, readable without torch.

Inference (:class:`~hepnn_coffea.inference.tagger.OnnxTagger`, dask workers) needs the
metadata keys, the name of the routing input and :func:`read_metadata`, but not the
exporter: they live here, so that running a model never imports torch.
:mod:`hepnn_coffea.export.onnx_export` re-exports them.
"""

from __future__ import annotations

import pathlib
from typing import Any

from hepnn_coffea._optional import require

__all__ = ["EXPERT_INPUT", "META_PREFIX", "ExportError", "read_metadata"]

#: prefix of the ``metadata_props`` keys hepnn_coffea writes (``hepnn_coffea.data_config``, ...)
META_PREFIX = "hepnn_coffea."
#: the extra int64 input ``(N,)`` of a multi-expert model: each entry's expert
EXPERT_INPUT = "expert_index"


class ExportError(RuntimeError):
    """Export failed, e.g. ONNX output differs from torch beyond the tolerance."""


def read_metadata(model: str | pathlib.Path | Any) -> dict[str, Any]:
    """The hepnn_coffea metadata of an ONNX file path or an onnxruntime session (parsed).

    A path is checked first (:func:`hepnn_coffea.inference.model_check.check_onnx_file`: external
    data inside the model's folder). Keys and value types are validated
    (:func:`~hepnn_coffea.inference.model_check.parse_metadata`); errors name the model and the key.

    Parameters
    ----------
    model
        Path of an ONNX file, or an ``onnxruntime.InferenceSession``.

    Returns
    -------
    dict
        Metadata name (without :data:`META_PREFIX`) -> parsed value.
    """
    from hepnn_coffea.inference.model_check import check_onnx_file, parse_metadata  # lazy: no import cycle

    if isinstance(model, (str, pathlib.Path)):
        check_onnx_file(model)
        ort = require("onnxruntime")
        where, model = str(model), ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    else:
        where = str(getattr(model, "_model_path", None) or "<onnxruntime session>")
    return parse_metadata(model.get_modelmeta().custom_metadata_map, where)
