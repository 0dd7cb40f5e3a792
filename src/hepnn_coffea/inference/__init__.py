"""Inference inside coffea processors, without torch: :class:`OnnxTagger`.

:class:`OnnxTagger` runs an exported model on events (eager, virtual or dask-awkward arrays),
computing its inputs with the same feature code as preprocessing; :func:`check_onnx_file`
checks a model file before onnxruntime reads it; :func:`gather_constituents` collects a NanoAOD
fat jet's PF candidates; :func:`load_weaver_config` reads a weaver-core data config.

Names are imported on first use.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "OnnxTagger": "hepnn_coffea.inference.tagger:OnnxTagger",
    "TaggerError": "hepnn_coffea.inference.tagger:TaggerError",
    "NonFiniteInputWarning": "hepnn_coffea.inference.tagger:NonFiniteInputWarning",
    "clear_session_cache": "hepnn_coffea.inference.tagger:clear_session_cache",
    "check_onnx_file": "hepnn_coffea.inference.model_check:check_onnx_file",
    "ModelCheckWarning": "hepnn_coffea.inference.model_check:ModelCheckWarning",
    "gather_constituents": "hepnn_coffea.inference.constituents:gather_constituents",
    "ConstituentIndexError": "hepnn_coffea.inference.constituents:ConstituentIndexError",
    "load_weaver_config": "hepnn_coffea.inference.weaver:load_weaver_config",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
