"""Training stage (needs the ``[train]`` extra): shards -> a run folder with checkpoints and logs."""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "train": "hepnn_coffea.training.trainer:train",
    "load_network": "hepnn_coffea.training.trainer:load_network",
    "ShardDataset": "hepnn_coffea.training.dataset:ShardDataset",
    "distance_correlation": "hepnn_coffea.training.disco:distance_correlation",
    "compute_reweight_hists": "hepnn_coffea.training.reweight:compute_reweight_hists",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
