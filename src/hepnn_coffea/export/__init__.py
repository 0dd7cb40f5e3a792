"""ONNX export with embedded preprocessing metadata and a parity check.

:func:`export_onnx` needs the ``train`` extra (torch); :func:`read_metadata` and
:class:`ExportError` come from the torch-free :mod:`.metadata`. Names are imported on first use,
so ``import hepnn_coffea.export`` loads no torch.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "export_onnx": "hepnn_coffea.export.onnx_export:export_onnx",
    "read_metadata": "hepnn_coffea.export.metadata:read_metadata",
    "ExportError": "hepnn_coffea.export.metadata:ExportError",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
