"""Preprocessing stage: coffea processors over a fileset -> training-ready shards + manifest.

:func:`preprocess` is the stage (fileset + data config -> shards); :func:`load_fileset` and
:func:`select_split` read a coffea fileset with split metadata; :func:`run_runner`,
:func:`run_dask` and :func:`run_processor` run any coffea processor with the executors of every
stage; :func:`validate_files` checks files and branches up front; :func:`open_shard` reads a
shard back memory-mapped.

Names are imported on first use, except :func:`preprocess` (see below).
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "preprocess": "hepnn_coffea.processing.preprocess:preprocess",
    "ReconciliationError": "hepnn_coffea.processing.preprocess:ReconciliationError",
    "load_fileset": "hepnn_coffea.processing.fileset:load_fileset",
    "select_split": "hepnn_coffea.processing.fileset:select_split",
    "FilesetError": "hepnn_coffea.processing.fileset:FilesetError",
    "validate_files": "hepnn_coffea.processing.bad_files:validate_files",
    "BadInputError": "hepnn_coffea.processing.bad_files:BadInputError",
    "BadFilePolicy": "hepnn_coffea.processing.bad_files:BadFilePolicy",
    "run_processor": "hepnn_coffea.processing.runner:run_processor",
    "run_runner": "hepnn_coffea.processing.runner:run_runner",
    "run_dask": "hepnn_coffea.processing.runner:run_dask",
    "dask_client": "hepnn_coffea.processing.runner:dask_client",
    "ChunkProcessor": "hepnn_coffea.processing.processor:ChunkProcessor",
    "StandardizationProcessor": "hepnn_coffea.processing.processor:StandardizationProcessor",
    "ShardWriterProcessor": "hepnn_coffea.processing.processor:ShardWriterProcessor",
    "open_shard": "hepnn_coffea.processing.shards:open_shard",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)

# ``preprocess`` is also a submodule's name: importing the submodule binds the module here, so the
# function is bound eagerly, after the submodule import, to be what ``processing.preprocess`` means.
from hepnn_coffea.processing.preprocess import preprocess  # noqa: E402, F401
