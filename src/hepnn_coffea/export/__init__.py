"""ONNX export with embedded preprocessing metadata and a parity check.

``export_onnx`` needs the ``train`` extra (torch) and is imported on first use;
``read_metadata`` and ``ExportError`` come from the torch-free :mod:`.metadata`.
"""

from __future__ import annotations

from typing import Any

from hepnn_coffea.export.metadata import ExportError, read_metadata

__all__ = ["ExportError", "export_onnx", "read_metadata"]


def __getattr__(name: str) -> Any:
    """``export_onnx`` on first access (keeps ``import hepnn_coffea.export`` free of torch)."""
    if name == "export_onnx":
        from hepnn_coffea.export.onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'hepnn_coffea.export' has no attribute {name!r}")
