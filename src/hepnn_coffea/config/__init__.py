"""Configuration: weaver-compatible data configs and inheriting model/training configs.

* :class:`DataConfig` (weaver-core's data-config YAML, with ``extends:``) and its parts
  :class:`InputGroup`, :class:`VarSpec`, :class:`WeightsConfig` (reweighting) and
  :class:`RowsConfig` (event-level rows per fat jet, :class:`GenMatchConfig`);
* :func:`load_model_config` -> :class:`ModelConfig` with its :class:`TrainingConfig` (every key
  and type checked), :class:`FinetuneConfig` for staged fine-tuning;
* :func:`load_variations` -> :class:`VariationsConfig` (systematic variations at inference);
* :func:`load_with_extends`: the ``extends:`` mechanism of every YAML file.

Names are imported on first use.
"""

from hepnn_coffea._lazy import lazy_exports

_EXPORTS = {
    "ConfigError": "hepnn_coffea.config.input_groups:ConfigError",
    "DataConfig": "hepnn_coffea.config.data_config:DataConfig",
    "InputGroup": "hepnn_coffea.config.input_groups:InputGroup",
    "VarSpec": "hepnn_coffea.config.input_groups:VarSpec",
    "WeightsConfig": "hepnn_coffea.config.weights_config:WeightsConfig",
    "WeightsConfigError": "hepnn_coffea.config.weights_config:WeightsConfigError",
    "RowsConfig": "hepnn_coffea.config.rows_config:RowsConfig",
    "RowsConfigError": "hepnn_coffea.config.rows_config:RowsConfigError",
    "GenMatchConfig": "hepnn_coffea.config.rows_config:GenMatchConfig",
    "load_model_config": "hepnn_coffea.config.model_config:load_model_config",
    "ModelConfig": "hepnn_coffea.config.training_config:ModelConfig",
    "TrainingConfig": "hepnn_coffea.config.training_config:TrainingConfig",
    "FinetuneConfig": "hepnn_coffea.config.finetune_config:FinetuneConfig",
    "load_variations": "hepnn_coffea.config.variations_config:load_variations",
    "VariationsConfig": "hepnn_coffea.config.variations_config:VariationsConfig",
    "Variation": "hepnn_coffea.config.variations_config:Variation",
    "load_with_extends": "hepnn_coffea.config.yaml_extends:load_with_extends",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
