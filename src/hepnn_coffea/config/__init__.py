"""Configuration: weaver-compatible data configs and inheriting model/training configs."""

from hepnn_coffea.config.data_config import ConfigError, DataConfig, InputGroup, VarSpec
from hepnn_coffea.config.model_config import load_model_config

__all__ = ["ConfigError", "DataConfig", "InputGroup", "VarSpec", "load_model_config"]
