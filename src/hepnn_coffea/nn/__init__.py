"""Model zoo: one file per architecture, selected by name from a model config.

A model config's ``model`` section names the architecture, maps each of its
input roles to a data-config input group, and passes constructor ``params``::

    model:
      name: pfn
      inputs: {features: pf_features, mask: pf_mask}
      params: {phi_sizes: [128, 128, 128], f_sizes: [128, 128, 128], use_bn: true}

Every architecture with a per-particle ``features`` role also takes an optional ``globals``
role: a length-less group of per-jet values (e.g. jet pT, soft-drop mass, N-subjettiness
ratios) appended to every particle's features, as ATLAS's GN2 appends the jet pT and eta to
each track. The network then sees the jet-level observables next to the constituents::

      inputs: {features: pf_features, mask: pf_mask, globals: jet_features}
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hepnn_coffea._lazy import lazy_exports
from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.training_config import suggest

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None


@dataclass(frozen=True)
class Architecture:
    """How to build one architecture: its input roles, a builder and the class it builds.

    ``constructor`` (``"module:Class"``) is the class whose keyword arguments after the
    first two (input dimension, number of outputs) are the valid ``model.params``.
    """

    roles: tuple[str, ...]
    build: Callable[[dict[str, tuple[int, ...]], int, dict[str, Any]], nn.Module]
    constructor: str

    def param_names(self) -> list[str] | None:
        """The keyword arguments ``model.params`` may set, ``None`` if the constructor takes ``**kwargs``."""
        module, name = self.constructor.split(":")
        params = list(
            inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters.values()
        )
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in params[3:] if p.kind in kinds]  # after self, input_dims, num_outputs


def _fc_params(params: dict[str, Any]) -> None:
    """YAML lists ``[[units, dropout], ...]`` -> the ``(int, float)`` tuples the models take (in place)."""
    if "fc_params" in params:
        params["fc_params"] = [(int(u), float(d)) for u, d in params["fc_params"]]


def _build_pfn(shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]) -> nn.Module:
    from hepnn_coffea.nn.pfn import ParticleFlowNetwork

    return ParticleFlowNetwork(shapes["features"][0], n_out, **params)


def _build_particlenet(shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]) -> nn.Module:
    from hepnn_coffea.nn.particlenet import ParticleNet

    params = dict(params)
    if "conv_params" in params:
        params["conv_params"] = [(int(k), tuple(c)) for k, c in params["conv_params"]]
    _fc_params(params)
    return ParticleNet(shapes["features"][0], n_out, **params)


def _build_pcnn(shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]) -> nn.Module:
    from hepnn_coffea.nn.pcnn import ParticleCNN

    params = dict(params)
    if "conv_params" in params:
        params["conv_params"] = [tuple(c) for c in params["conv_params"]]
    _fc_params(params)
    return ParticleCNN(shapes["features"][0], n_out, **params)


def _build_part(shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]) -> nn.Module:
    from hepnn_coffea.nn.part import ParticleTransformer

    params = dict(params)
    for key in ("embed_dims", "pair_embed_dims"):
        if key in params:
            params[key] = tuple(params[key])
    _fc_params(params)
    return ParticleTransformer(shapes["features"][0], n_out, **params)


def _build_mlp(shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]) -> nn.Module:
    from hepnn_coffea.nn.mlp import MLP

    if len(shapes["features"]) != 1:
        raise ConfigError(
            "model 'mlp' needs a length-less input group (one vector per entry), "
            f"got shape {shapes['features']}"
        )
    return MLP(shapes["features"][0], n_out, **params)


def _build_pointnet(shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]) -> nn.Module:
    from hepnn_coffea.nn.pointnet import PointNetSegmentation

    if shapes["energy"][0] != 1:
        raise ConfigError(
            "model 'pointnet' needs a one-variable 'energy' group (raw point energies), "
            f"got {shapes['energy']}"
        )
    return PointNetSegmentation(shapes["features"][0], n_out, **params)


def _build_hit_clustering(
    shapes: dict[str, tuple[int, ...]], n_out: int, params: dict[str, Any]
) -> nn.Module:
    from hepnn_coffea.calo.clustering_model import HitClusteringTransformer

    if shapes["energy"][0] != 1:
        raise ConfigError(
            "model 'hit_clustering' needs a one-variable 'energy' group (raw hit energies), "
            f"got {shapes['energy']}"
        )
    return HitClusteringTransformer(shapes["features"][0], n_out, **params)


ARCHITECTURES: dict[str, Architecture] = {
    "mlp": Architecture(("features",), _build_mlp, "hepnn_coffea.nn.mlp:MLP"),
    "pointnet": Architecture(
        ("features", "energy", "mask"), _build_pointnet, "hepnn_coffea.nn.pointnet:PointNetSegmentation"
    ),
    "pfn": Architecture(("features", "mask"), _build_pfn, "hepnn_coffea.nn.pfn:ParticleFlowNetwork"),
    "particlenet": Architecture(
        ("points", "features", "mask"), _build_particlenet, "hepnn_coffea.nn.particlenet:ParticleNet"
    ),
    "part": Architecture(
        ("features", "vectors", "mask"), _build_part, "hepnn_coffea.nn.part:ParticleTransformer"
    ),
    "pcnn": Architecture(("features", "mask"), _build_pcnn, "hepnn_coffea.nn.pcnn:ParticleCNN"),
    "hit_clustering": Architecture(
        ("features", "energy", "mask"),
        _build_hit_clustering,
        "hepnn_coffea.calo.clustering_model:HitClusteringTransformer",
    ),
}


def check_params(name: str, params: Mapping[str, Any] | None) -> None:
    """Every key of ``model.params`` must be a keyword argument of the architecture's constructor.

    Raises
    ------
    ConfigError
        Naming the unknown parameter and the closest valid one.
    """
    name = str(name).lower()
    if name not in ARCHITECTURES:
        raise ConfigError(
            f"model.name {name!r} is not in the zoo{suggest(name, ARCHITECTURES)}; "
            f"choose one of {sorted(ARCHITECTURES)}"
        )
    allowed = ARCHITECTURES[name].param_names()
    if allowed is None:
        return
    for key in params or {}:
        if key not in allowed:
            raise ConfigError(
                f"model.params.{key}: not a parameter of model '{name}'{suggest(str(key), allowed)} "
                f"(allowed: {', '.join(allowed)})"
            )


#: optional role of every architecture with a per-particle ``features`` role
GLOBALS_ROLE = "globals"


class Network(nn.Module):
    """A zoo model with its inputs named after data-config groups.

    ``forward`` takes one tensor per group in :attr:`input_groups` order and returns
    logits (classification) or predictions (regression). With a ``globals`` role (always
    the last input), its ``(N, G)`` values are appended to each particle's ``(N, C, P)``
    features before the architecture sees them.
    """

    def __init__(self, core: nn.Module, input_groups: list[str], roles: list[str] | None = None) -> None:
        super().__init__()
        self.core = core
        self.input_groups = list(input_groups)
        #: architecture role (features, mask, points, vectors, globals) -> data-config group
        self.roles = dict(zip(roles or [], self.input_groups))
        self._features_at = list(self.roles).index("features") if GLOBALS_ROLE in self.roles else None
        #: regression: (offset, scale) with ``physical = output * scale + offset``
        self.target_scaling: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.core(*self._core_inputs(inputs))

    def forward_with_aux(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Outputs and the auxiliary tensors a model's own loss needs (``{}`` for most models)."""
        core_inputs = self._core_inputs(inputs)
        if hasattr(self.core, "forward_with_aux"):
            return self.core.forward_with_aux(*core_inputs)
        return self.core(*core_inputs), {}

    def _core_inputs(self, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        if self._features_at is None:
            return list(inputs)
        *per_particle, jet = inputs
        x = per_particle[self._features_at]
        per_particle[self._features_at] = torch.cat(
            [x, jet.to(x.dtype).unsqueeze(-1).expand(-1, -1, x.shape[-1])], dim=1
        )
        return per_particle

    def set_target_scaling(self, offset: list[float], scale: list[float]) -> None:
        """Regression targets are learnt standardized; this maps outputs back to physical units."""
        self.target_scaling = (
            torch.tensor(offset, dtype=torch.float32),
            torch.tensor(scale, dtype=torch.float32),
        )

    def physical(self, output: torch.Tensor) -> torch.Tensor:
        """``output`` in the targets' units (identity without target scaling)."""
        if self.target_scaling is None:
            return output
        offset, scale = self.target_scaling
        return output * scale.to(output.device) + offset.to(output.device)


def build_network(
    model_cfg: dict[str, Any], input_shapes: dict[str, tuple[int, ...]], n_outputs: int
) -> Network:
    """Build the network a model config's ``model`` section describes.

    Parameters
    ----------
    model_cfg
        ``{"name": ..., "inputs": {role: group}, "params": {...}}``.
    input_shapes
        Per data-config group, the per-entry shape ``(n_vars, length)``.
    n_outputs
        Number of classes (or regression targets).
    """
    name = str(model_cfg.get("name", "")).lower()
    check_params(name, model_cfg.get("params"))
    arch = ARCHITECTURES[name]
    mapping = model_cfg.get("inputs") or {}
    missing = [r for r in arch.roles if r not in mapping]
    if missing:
        raise ConfigError(
            f"model '{name}' needs model.inputs for role(s) {missing} (role: data-config group)"
        )
    allowed = [*arch.roles, *([GLOBALS_ROLE] if "features" in arch.roles else [])]
    for role in mapping:
        if role not in allowed:
            raise ConfigError(
                f"model.inputs.{role}: not a role of model '{name}'{suggest(str(role), allowed)} "
                f"(roles: {', '.join(allowed)})"
            )
    roles = [r for r in allowed if r in mapping]
    groups = [mapping[r] for r in roles]
    unknown = [g for g in groups if g not in input_shapes]
    if unknown:
        raise ConfigError(
            f"model.inputs names group(s) {unknown} not in the data config {sorted(input_shapes)}"
        )
    shapes = {role: tuple(input_shapes[g]) for role, g in zip(roles, groups)}
    if GLOBALS_ROLE in shapes:
        if len(shapes[GLOBALS_ROLE]) != 1 or len(shapes["features"]) != 2:
            raise ConfigError(
                f"model.inputs.globals: group '{mapping[GLOBALS_ROLE]}' must be length-less (one value "
                f"per variable and jet) next to a per-particle 'features' group; got shapes "
                f"{shapes[GLOBALS_ROLE]} and {shapes['features']}"
            )
        n_vars, length = shapes["features"]
        shapes["features"] = (n_vars + shapes.pop(GLOBALS_ROLE)[0], length)
    try:
        core = arch.build(shapes, n_outputs, dict(model_cfg.get("params") or {}))
    except TypeError as err:
        raise ConfigError(f"model '{name}': bad model.params: {err}") from err
    return Network(core, groups, roles)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


#: the architectures' classes, imported on first use (``from hepnn_coffea.nn import ParticleNet``)
_MODELS = {
    "MLP": "hepnn_coffea.nn.mlp:MLP",
    "ParticleFlowNetwork": "hepnn_coffea.nn.pfn:ParticleFlowNetwork",
    "ParticleNet": "hepnn_coffea.nn.particlenet:ParticleNet",
    "ParticleTransformer": "hepnn_coffea.nn.part:ParticleTransformer",
    "ParticleCNN": "hepnn_coffea.nn.pcnn:ParticleCNN",
    "PointNetSegmentation": "hepnn_coffea.nn.pointnet:PointNetSegmentation",
}
__getattr__, _dir_models = lazy_exports(__name__, _MODELS)


def __dir__() -> list[str]:
    """The module's own names and the architectures' classes."""
    return sorted({*globals(), *_dir_models()})


__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "GLOBALS_ROLE",
    "Network",
    "build_network",
    "check_params",
    "count_parameters",
    *_MODELS,
]
