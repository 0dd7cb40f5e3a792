"""Preprocessing stage: coffea processors over a fileset -> training-ready shards + manifest."""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "preprocess": "hepnn_coffea.processing.preprocess:preprocess",
    "load_fileset": "hepnn_coffea.processing.fileset:load_fileset",
    "validate_files": "hepnn_coffea.processing.bad_files:validate_files",
    "run_processor": "hepnn_coffea.processing.runner:run_processor",
    "run_runner": "hepnn_coffea.processing.runner:run_runner",
    "run_dask": "hepnn_coffea.processing.runner:run_dask",
    "ChunkProcessor": "hepnn_coffea.processing.processor:ChunkProcessor",
    "open_shard": "hepnn_coffea.processing.shards:open_shard",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
