"""The ``finetune:`` section of a model config: start from a checkpoint, freeze, scale learning rates.

::

    finetune:
      init_from: ../../shared/pretrained/ParticleNet_JetClass_kin.pt   # relative: to the config file
      exclude: ['fc\\.1\\..*']         # not loaded: the new 2-class output layer keeps its fresh init
      lr_mult: {'fc\\.1\\..*': 50}     # 50 x training.lr for it
      stages: [{epochs: 2, train: 'fc\\..*'}, {train: '.*'}]   # head only for 2 epochs, then all

Every pattern is a Python regular expression matched against the *whole* tensor name of the
architecture (``re.fullmatch``; the names of ``Network.core``, e.g. ``fc.1.weight``,
``edge_convs.0.edge_mlp.0.weight``; see ``docs/finetuning.md``). The section is applied by
:mod:`hepnn_coffea.training.finetune`; here keys, types and patterns are checked. This
module imports neither torch nor, at import time, the model-config module.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hepnn_coffea.config.data_config import ConfigError

__all__ = ["FinetuneConfig", "StageConfig"]

#: keys whose value is a list of patterns; a single string is accepted for one pattern
_PATTERN_LISTS = ("include", "exclude", "freeze", "train")


@dataclass(frozen=True)
class StageConfig:
    """One training stage: which parameters train, for how many epochs.

    Attributes
    ----------
    epochs
        Length of the stage; ``None`` only for the last stage (the remaining epochs).
    train
        Patterns of the parameters trained in this stage; all others are frozen in it
        (``finetune.freeze`` applies in every stage on top).
    """

    epochs: int | None = None
    train: list[str] = field(default_factory=lambda: [".*"])


@dataclass(frozen=True)
class FinetuneConfig:
    """Initialisation from a checkpoint, frozen parameters, learning-rate groups and stages.

    Attributes
    ----------
    init_from
        A checkpoint to start from: a weaver-core / particle_transformer ``state_dict`` file
        (``.pt``, with or without the ``mod.`` prefix), a hepnn_coffea checkpoint
        (``RUN/checkpoints/*.pt``) or a run directory (its ``checkpoints/<checkpoint>``).
        ``None``: fresh initialisation (``freeze``/``lr_mult``/``stages`` still apply).
    checkpoint
        File taken from a run directory.
    include
        Only checkpoint tensors matching one of these are loaded (``None``: all).
    exclude
        Tensors not loaded (they keep the fresh initialisation); a tensor whose shape differs
        between checkpoint and model must be excluded (or not included), else it is an error.
    freeze
        Tensors never trained (``requires_grad=False``; a frozen batch norm runs in eval mode,
        so its running statistics are used and kept).
    lr_mult
        ``{pattern: factor}``: parameters matching ``pattern`` train with ``factor * lr``
        (first matching pattern wins), one optimizer parameter group per factor.
    stages
        Consecutive stages (see :class:`StageConfig`); empty: one stage training everything.
    """

    init_from: str | None = None
    checkpoint: str = "best.pt"
    include: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    lr_mult: dict[str, float] = field(default_factory=dict)
    stages: list[StageConfig] = field(default_factory=list)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "finetune") -> FinetuneConfig:
        """Check keys, types and patterns; errors name ``where`` and the key (closest valid key suggested)."""
        from hepnn_coffea.config.training_config import _mapping, _typed_fields  # the model-config checks

        raw = dict(_mapping(raw, where))
        for key in _PATTERN_LISTS:
            if isinstance(raw.get(key), str):
                raw[key] = [raw[key]]
        stages_raw = raw.pop("stages", None) or []
        values = _typed_fields(cls, raw, f"{where}.")
        if not isinstance(stages_raw, list):
            raise ConfigError(f"{where}.stages: expected a list of stages, got {type(stages_raw).__name__}")
        stages = []
        for i, stage in enumerate(stages_raw):
            label = f"{where}.stages[{i}]"
            stage = dict(_mapping(stage, label))
            if isinstance(stage.get("train"), str):
                stage["train"] = [stage["train"]]
            stages.append(StageConfig(**_typed_fields(StageConfig, stage, f"{label}.")))
        config = cls(**values, stages=stages)
        config._check(where)
        return config

    def _check(self, where: str) -> None:
        lists = {
            "include": self.include or [],
            "exclude": self.exclude,
            "freeze": self.freeze,
            "lr_mult": list(self.lr_mult),
        }
        lists.update({f"stages[{i}].train": s.train for i, s in enumerate(self.stages)})
        for key, patterns in lists.items():
            for j, pattern in enumerate(patterns):
                _compile(pattern, f"{where}.{key}" + ("" if key == "lr_mult" else f"[{j}]"))
        for pattern, factor in self.lr_mult.items():
            if not factor > 0:
                raise ConfigError(f"{where}.lr_mult.{pattern}: the factor must be > 0, got {factor}")
        if self.init_from is None and (self.include is not None or self.exclude):
            raise ConfigError(f"{where}: include/exclude select checkpoint tensors but init_from is not set")
        for i, stage in enumerate(self.stages):
            if stage.epochs is None and i < len(self.stages) - 1:
                raise ConfigError(
                    f"{where}.stages[{i}].epochs: missing (only the last stage may run to the end)"
                )
            if stage.epochs is not None and stage.epochs < 1:
                raise ConfigError(f"{where}.stages[{i}].epochs: must be >= 1, got {stage.epochs}")
            if not stage.train:
                raise ConfigError(f"{where}.stages[{i}].train: empty (a stage must train something)")

    def stage_at(self, epoch: int) -> tuple[int, StageConfig] | None:
        """The stage (index, config) of 0-based ``epoch``; ``None`` without stages or after the last one."""
        start = 0
        for i, stage in enumerate(self.stages):
            if stage.epochs is None or epoch < start + stage.epochs:
                return i, stage
            start += stage.epochs
        return None

    def to_dict(self) -> dict[str, Any]:
        """Every option with its value (defaults included)."""
        return dataclasses.asdict(self)


def _compile(pattern: Any, label: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ConfigError(
            f"{label}: expected a regular expression (a string), got {type(pattern).__name__} {pattern!r}"
        )
    try:
        return re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"{label}: {pattern!r} is not a valid regular expression: {err}") from None
