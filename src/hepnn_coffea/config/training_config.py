"""Typed model and training configs: one place for the defaults, unknown keys rejected.

A model config (``models/*.yaml``, after ``extends`` is resolved) has the top-level keys

``task``         classification | regression | per_point_regression | model_loss
``loss``         the regression loss (mse | huber | l1 | logcosh); classification uses cross entropy
``model``        ``name``, ``inputs`` (role -> data-config group) and ``params`` (constructor kwargs)
``training``     the options of :class:`TrainingConfig`
``data_config``  the data config the model is meant for
``finetune``     start from a checkpoint, freeze, per-group learning rates, stages (:class:`FinetuneConfig`)
``extends``      the parent config (resolved by :func:`~hepnn_coffea.config.model_config.load_model_config`)
``expert_<name>`` per-expert overrides: top-level sections, or training keys as a shorthand

:meth:`ModelConfig.from_dict` checks every key and type: an unknown key is a
:class:`~hepnn_coffea.config.data_config.ConfigError` naming the key and the closest valid
one (``training.epohcs: unknown key; did you mean 'epochs'?``), a value of the wrong type
names the expected type. The defaults live in the dataclasses below only;
``models/base.yaml`` documents them (a test keeps the two equal). The contents of
``training.disco`` (:class:`~hepnn_coffea.training.disco.DiscoConfig`) and
``training.reweight`` (:func:`~hepnn_coffea.training.sampling.sampler_from_config`) are
checked where they are used, against the shards; ``model.params`` against the network's
constructor (:func:`hepnn_coffea.nn.check_params`).

This module imports neither torch nor the feature code.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.finetune_config import FinetuneConfig

__all__ = [
    "AMP_MODES",
    "EXPERT_PREFIX",
    "OPTIMIZERS",
    "SCHEDULERS",
    "TASKS",
    "WEIGHT_SAMPLING",
    "ModelConfig",
    "ModelSection",
    "TrainingConfig",
    "suggest",
]

#: what a model can be trained for (``task``)
TASKS = ("classification", "regression", "per_point_regression", "model_loss")
#: ``training.optimizer`` (case-insensitive), see :func:`hepnn_coffea.training.optim.build_optimizer`
OPTIMIZERS = ("adamw", "adam", "radam", "ranger", "sgd")
#: ``training.scheduler`` (case-insensitive), see :func:`hepnn_coffea.training.optim.build_scheduler`
SCHEDULERS = ("none", "flat+decay", "cosine", "one-cycle")
#: ``training.amp``: autocast dtypes on CUDA
AMP_MODES = ("bf16", "fp16")
#: ``training.sample_by_weight`` modes, see :func:`hepnn_coffea.training.sampling.weight_sampler`
WEIGHT_SAMPLING = ("proportional", "class_balanced")
#: prefix of the per-expert override blocks
EXPERT_PREFIX = "expert_"
#: PyYAML (YAML 1.1) reads ``1e-3`` (no dot) as a string; such strings are accepted for numbers
_FLOAT_STRING = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _choices(values: tuple[str, ...], *, case_sensitive: bool = True) -> dict[str, Any]:
    return {"choices": values, "case_sensitive": case_sensitive}


@dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` section of a model config (defaults documented in ``models/base.yaml``).

    Attributes
    ----------
    epochs, batch_size
        Training length and jets per optimizer step.
    samples_per_epoch
        Jets per epoch; ``None`` (or 0): the whole train split, larger cycles through it.
    val_samples
        Jets of the val split scored each epoch (a fixed seeded subset); ``None`` (or 0): all.
    optimizer, lr, weight_decay
        One of :data:`OPTIMIZERS`, learning rate, weight decay.
    scheduler, warmup_steps
        One of :data:`SCHEDULERS`; warm-up steps for ``cosine``/``one-cycle``.
    grad_clip
        Maximum gradient norm, or ``None``.
    label_smoothing
        Cross-entropy label smoothing (classification).
    early_stopping_patience
        Epochs without validation improvement before stopping; ``None``: never.
    seed
        Seeds torch and every epoch's row order.
    device
        ``auto`` (cuda > mps > cpu) or a torch device name.
    num_threads
        torch intra-op threads; ``None`` (or 0): torch's default.
    tensorboard
        Write tensorboard event files besides ``metrics.csv``.
    trim, trim_min_length
        Cut the particle axis of each batch to its longest jet (not below ``trim_min_length``).
    bucket_by_length
        Batch jets of similar multiplicity together (more trimming).
    prefetch
        Batches gathered ahead in a background thread (0: none).
    amp
        ``bf16`` or ``fp16`` autocast on CUDA (ignored elsewhere), or ``None``.
    compile
        ``torch.compile`` the model.
    sample_by_weight
        ``class_balanced`` | ``proportional``: draw the train rows by the shards' precomputed weight.
    disco
        DisCo mass-decorrelation mapping (parsed by :class:`~hepnn_coffea.training.disco.DiscoConfig`).
    reweight
        Regression bucket reweighting mapping (parsed by
        :func:`~hepnn_coffea.training.sampling.sampler_from_config`).
    """

    epochs: int = 10
    batch_size: int = 512
    samples_per_epoch: int | None = None
    val_samples: int | None = None
    optimizer: str = field(default="ranger", metadata=_choices(OPTIMIZERS, case_sensitive=False))
    lr: float = 1.0e-2
    weight_decay: float = 0.0
    scheduler: str = field(default="flat+decay", metadata=_choices(SCHEDULERS, case_sensitive=False))
    warmup_steps: int = 0
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    early_stopping_patience: int | None = None
    seed: int = 42
    device: str = "auto"
    num_threads: int | None = None
    tensorboard: bool = True
    trim: bool = True
    trim_min_length: int = 32
    bucket_by_length: bool = False
    prefetch: int = 2
    amp: str | None = field(default=None, metadata=_choices(AMP_MODES))
    compile: bool = False
    sample_by_weight: str | None = field(default=None, metadata=_choices(WEIGHT_SAMPLING))
    disco: dict[str, Any] | None = None
    reweight: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "training") -> TrainingConfig:
        """Check ``raw`` (missing keys take the defaults); errors name ``where`` and the key."""
        return cls(**_typed_fields(cls, _mapping(raw, where), f"{where}."))

    def to_dict(self) -> dict[str, Any]:
        """Every option with its value (defaults included)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelSection:
    """The ``model:`` section: architecture ``name``, ``inputs`` (role -> group), constructor ``params``."""

    name: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, where: str = "model") -> ModelSection:
        """Check keys and types (the architecture itself is checked when the network is built)."""
        return cls(**_typed_fields(cls, _mapping(raw, where), f"{where}."))


@dataclass(frozen=True)
class ModelConfig:
    """A resolved model config (see the module docstring).

    Attributes
    ----------
    task
        One of :data:`TASKS`.
    loss
        Regression loss name (``mse`` when absent), checked by
        :func:`hepnn_coffea.training.targets.regression_loss`.
    model, training
        The typed sections.
    data_config
        Path of the data config the model is meant for, or ``None``.
    finetune
        Initialisation from a checkpoint and freezing (:class:`FinetuneConfig`), or ``None``.
    experts
        The ``expert_<name>`` override blocks, checked but not applied (see
        :func:`~hepnn_coffea.config.model_config.resolve_expert`).
    """

    task: str = field(default="classification", metadata=_choices(TASKS))
    loss: str = "mse"
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data_config: str | None = None
    finetune: FinetuneConfig | None = None
    extends: str | None = None
    experts: dict[str, dict[str, Any]] = field(default_factory=dict)

    #: top-level keys that are sections (also allowed inside an ``expert_<name>`` block)
    SECTIONS: typing.ClassVar[tuple[str, ...]] = (
        "task",
        "loss",
        "model",
        "training",
        "data_config",
        "finetune",
    )

    @classmethod
    def from_dict(
        cls, raw: Mapping[str, Any], source: str = "<dict>", *, complete: bool = True
    ) -> ModelConfig:
        """Check a model config; every error names ``source`` and the key.

        Parameters
        ----------
        raw
            The config after ``extends`` (and overrides) are merged.
        source
            The file (or ``<dict>``) for error messages.
        complete
            Require the ``model`` (with ``name``) and ``training`` sections a training run needs.
        """
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{source}: a model config must be a mapping, got {type(raw).__name__}")
        experts = {str(k): v for k, v in raw.items() if str(k).startswith(EXPERT_PREFIX)}
        plain = {k: v for k, v in raw.items() if not str(k).startswith(EXPERT_PREFIX)}
        _check_keys(plain, _TOP_LEVEL, f"{source}: ", hint=f"or an {EXPERT_PREFIX}<name> block")
        if complete and ("model" not in plain or "training" not in plain):
            raise ConfigError(
                f"{source}: a model config needs 'model' and 'training' sections (extend models/base.yaml)"
            )
        values = _typed_fields(cls, {k: v for k, v in plain.items() if k not in _NESTED}, f"{source}: ")
        if plain.get("finetune") is not None:
            values["finetune"] = FinetuneConfig.from_dict(plain["finetune"], f"{source}: finetune")
        model = ModelSection.from_dict(plain.get("model"), f"{source}: model")
        if complete and not model.name:
            raise ConfigError(f"{source}: model.name: missing (the architecture, e.g. pfn)")
        training = TrainingConfig.from_dict(plain.get("training"), f"{source}: training")
        for key, block in experts.items():
            _check_expert(block, f"{source}: {key}")
        return cls(**values, model=model, training=training, experts=experts)


def suggest(key: str, allowed: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``allowed`` (difflib), or ``""``."""
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


# ----------------------------------------------------------------- helpers
_TOP_LEVEL = [*ModelConfig.SECTIONS, "extends"]
_NESTED = ("model", "training", "finetune")  # sections checked by their own dataclass
_TRAINING_KEYS = [f.name for f in dataclasses.fields(TrainingConfig)]


def _mapping(raw: Any, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__} {raw!r}")
    return raw


def _check_expert(block: Any, where: str) -> None:
    """An ``expert_<name>`` block: sections, or training keys as a shorthand (checked like the base)."""
    if block is None:
        return
    if not isinstance(block, Mapping):
        raise ConfigError(f"{where}: expected a mapping of overrides, got {type(block).__name__}")
    _check_keys(block, [*ModelConfig.SECTIONS, *_TRAINING_KEYS], f"{where}.")
    sections = {k: v for k, v in block.items() if k in ModelConfig.SECTIONS}
    _typed_fields(ModelConfig, {k: v for k, v in sections.items() if k not in _NESTED}, f"{where}.")
    if sections.get("finetune") is not None:
        FinetuneConfig.from_dict(sections["finetune"], f"{where}.finetune")
    ModelSection.from_dict(sections.get("model"), f"{where}.model")
    TrainingConfig.from_dict(sections.get("training"), f"{where}.training")
    TrainingConfig.from_dict({k: v for k, v in block.items() if k not in ModelConfig.SECTIONS}, where)


def _check_keys(raw: Mapping[str, Any], allowed: list[str], prefix: str, hint: str = "") -> None:
    """Every key of ``raw`` is in ``allowed``; the error names ``prefix + key`` and the closest one."""
    for key in raw:
        if key not in allowed:
            raise ConfigError(
                f"{prefix}{key}: unknown key{suggest(str(key), allowed)} "
                f"(allowed: {', '.join(allowed)}{' ' + hint if hint else ''})"
            )


def _typed_fields(cls: type, raw: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``raw`` checked against the fields of dataclass ``cls``: known keys, declared types, choices."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "experts"}
    _check_keys(raw, list(fields), prefix)
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in raw.items():
        label = f"{prefix}{key}"
        out[key] = _coerce(value, hints[key], label)
        choices = fields[key].metadata.get("choices")
        if choices and out[key] is not None:
            given = out[key] if fields[key].metadata.get("case_sensitive", True) else out[key].lower()
            if given not in choices:
                raise ConfigError(
                    f"{label}: {value!r} is not one of {list(choices)}"
                    f"{' (or null)' if _allows_none(hints[key]) else ''}{suggest(given, choices)}"
                )
    return out


def _members(hint: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(hint)
    return typing.get_args(hint) if origin in (Union, types.UnionType) else (hint,)


def _allows_none(hint: Any) -> bool:
    return type(None) in _members(hint)


def _coerce(value: Any, hint: Any, label: str) -> Any:
    """``value`` as declared by ``hint`` (ints and numeric strings become floats), else ConfigError."""
    for member in _members(hint):
        ok, converted = _match(value, member)
        if ok:
            return converted
    names = " or ".join(_describe(m) for m in _members(hint))
    raise ConfigError(f"{label}: expected {names}, got {type(value).__name__} {value!r}")


def _match(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint) or hint
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str) and _FLOAT_STRING.match(value.strip()):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)), list(value) if isinstance(value, (list, tuple)) else value
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            return False, value
        key_type, value_type = typing.get_args(hint) or (Any, Any)
        return all(_match(k, key_type)[0] and _match(v, value_type)[0] for k, v in value.items()), dict(value)
    return isinstance(value, origin), value


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint) or hint
    names = {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
        list: "a list",
        tuple: "a list",
        dict: "a mapping",
        Mapping: "a mapping",
    }
    args = typing.get_args(hint)
    if origin in (dict, Mapping) and args and args[1] is not Any:
        return f"a mapping ({_describe(args[0])} -> {_describe(args[1])})"
    return names.get(origin, getattr(origin, "__name__", str(origin)))
