"""Inference inside coffea processors: :class:`OnnxTagger`."""

from hepnn_coffea.inference.tagger import OnnxTagger, clear_session_cache

__all__ = ["OnnxTagger", "clear_session_cache"]
