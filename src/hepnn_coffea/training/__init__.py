"""Training stage (needs the ``[train]`` extra): shards -> a run folder with checkpoints and logs.

:func:`train` is the stage (model config + shards -> run folder, a :class:`TrainResult`);
:func:`load_network` rebuilds a trained network from its run folder; :class:`FineTuner` runs
staged fine-tuning from a pretrained checkpoint; :class:`ShardDataset` reads the shards;
:func:`distance_correlation` / :class:`DiscoPenalty` decorrelate a score from an observable;
:func:`compute_reweight_hists` computes weaver's reweighting histograms.

Names are imported on first use: ``import hepnn_coffea.training`` loads no torch.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "train": "hepnn_coffea.training.trainer:train",
    "TrainResult": "hepnn_coffea.training.trainer:TrainResult",
    "load_network": "hepnn_coffea.training.run_files:load_network",
    "train_experts": "hepnn_coffea.training.experts:train_experts",
    "FineTuner": "hepnn_coffea.training.finetune:FineTuner",
    "ShardDataset": "hepnn_coffea.training.dataset:ShardDataset",
    "distance_correlation": "hepnn_coffea.training.disco:distance_correlation",
    "DiscoPenalty": "hepnn_coffea.training.disco:DiscoPenalty",
    "compute_reweight_hists": "hepnn_coffea.training.reweight:compute_reweight_hists",
    "build_optimizer": "hepnn_coffea.training.optim:build_optimizer",
    "build_scheduler": "hepnn_coffea.training.optim:build_scheduler",
    "select_device": "hepnn_coffea.training.distributed:select_device",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
