"""Configuration: weaver-compatible data configs and inheriting model/training configs."""

from hepnn_coffea.config.data_config import ConfigError, DataConfig, InputGroup, VarSpec
from hepnn_coffea.config.model_config import load_model_config
from hepnn_coffea.config.training_config import ModelConfig, TrainingConfig

__all__ = ["ConfigError", "DataConfig", "InputGroup", "ModelConfig", "TrainingConfig", "VarSpec", "load_model_config"]
