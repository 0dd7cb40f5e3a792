"""ONNX export with embedded preprocessing metadata and a parity check."""

from hepnn_coffea.export.onnx_export import ExportError, export_onnx, read_metadata

__all__ = ["ExportError", "export_onnx", "read_metadata"]
