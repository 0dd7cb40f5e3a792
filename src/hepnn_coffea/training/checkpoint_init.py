"""Initialise a zoo model from a checkpoint: read it, map its names, select tensors, report.

:func:`read_checkpoint` accepts a weaver-core / particle_transformer ``state_dict`` (keys
with or without ``mod.``; renamed by :func:`hepnn_coffea.nn.weaver_keys.from_weaver`), a
hepnn_coffea checkpoint (``{"model": state_dict}``, keys ``core.*``) or a run directory.
:func:`load_selected` copies the selected tensors into the model and returns the report
(loaded / newly initialised / dropped / shape-mismatched tensors).
"""

from __future__ import annotations

import hashlib
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.training_config import suggest
from hepnn_coffea.nn import weaver_keys

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

__all__ = ["load_selected", "matching", "read_checkpoint"]


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checkpoint(
    path: str | pathlib.Path, arch: str, checkpoint: str = "best.pt", key: str = "finetune.init_from"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a checkpoint, named as ``arch``'s ``Network.core``, and where they came from.

    Parameters
    ----------
    path
        A ``.pt`` file or a run directory (then ``checkpoints/<checkpoint>``).
    arch
        The zoo architecture (``model.name``) whose names the tensors get.
    key
        The config key named in errors.

    Returns
    -------
    tuple
        ``(state, info)``; ``info`` has ``init_from`` (the file), ``sha256`` and ``format``.

    Raises
    ------
    ConfigError
        The path does not exist, is a folder without that checkpoint, or holds no state dict.
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{key}: {path} does not exist (a checkpoint .pt file or a run directory)")
    file = path / "checkpoints" / checkpoint if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(
            f"{key}: {path} is a folder without checkpoints/{checkpoint} "
            "(give a run directory, a .pt file, or set finetune.checkpoint)"
        )
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a config error naming it
        raise ConfigError(f"{key}: cannot read {file} as a torch checkpoint: {err}") from None
    state = obj.get("model") if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) else obj
    if (
        not isinstance(state, Mapping)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise ConfigError(f"{key}: {file} holds no state dict (a mapping of tensor names to tensors)")
    state, ours = weaver_keys.strip_prefix(state, "core.")
    if ours:
        fmt = "hepnn_coffea checkpoint"
    else:
        prefixed = any(k.startswith(weaver_keys.WEAVER_PREFIX) for k in state)
        fmt = "weaver state dict" + (" (prefix 'mod.')" if prefixed else "")
        if str(arch).lower() in weaver_keys.ARCHITECTURES:
            state = weaver_keys.from_weaver(state, arch)
        else:
            state, _ = weaver_keys.strip_prefix(state)
    return dict(state), {"init_from": str(file.resolve()), "sha256": _sha256(file), "format": fmt}


def matching(patterns: Sequence[str] | None, name: str) -> bool:
    """Whether ``name`` matches one of ``patterns`` as a whole (``re.fullmatch``)."""
    return any(re.fullmatch(p, name) for p in patterns or ())


def check_patterns(patterns: Sequence[str], names: Sequence[str], key: str, what: str) -> None:
    """Every pattern matches at least one of ``names``, else a ConfigError naming it and the closest name."""
    for i, pattern in enumerate(patterns):
        if not any(re.fullmatch(pattern, n) for n in names):
            label = key if key.endswith("lr_mult") else f"{key}[{i}]"
            raise ConfigError(
                f"{label}: {pattern!r} matches no {what}{suggest(pattern, names)} "
                f"(patterns match whole names, e.g. {names[-1]!r}; see docs/finetuning.md)"
            )


def _shape(t: torch.Tensor) -> list[int]:
    return [int(s) for s in t.shape]


def _same_shape(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes, or equal after dropping size-1 axes (``Conv2d(1x1)`` vs ``Conv1d`` weights)."""
    if a.shape == b.shape:
        return True
    return (
        a.numel() == b.numel()
        and [s for s in a.shape if s != 1] == [s for s in b.shape if s != 1]
        and a.ndim > 1
    )


def load_selected(
    core: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    source: str = "the checkpoint",
    key: str = "finetune",
) -> dict[str, Any]:
    """Copy the selected checkpoint tensors into ``core``; return what happened to every tensor.

    A tensor is loaded when it is in both, matches ``include`` (if given) and no ``exclude``
    pattern, and has the model's shape. Everything else keeps its fresh initialisation.

    Returns
    -------
    dict
        ``loaded`` (names), ``new`` (model tensors not loaded: name -> reason), ``dropped``
        (checkpoint tensors not used: name -> reason), ``shape_mismatched`` (name ->
        ``{"checkpoint", "model"}`` shapes; all of them excluded or not included) and
        ``counts`` (numbers of tensors, and ``loaded_values``: elements loaded).

    Raises
    ------
    ConfigError
        A tensor has a different shape in the checkpoint and is not excluded (names it).
    """
    own = core.state_dict()
    names = sorted(set(own) | set(state))
    check_patterns(include or [], names, f"{key}.include", "tensor of the model or the checkpoint")
    check_patterns(exclude, names, f"{key}.exclude", "tensor of the model or the checkpoint")
    loaded: dict[str, torch.Tensor] = {}
    new: dict[str, str] = {}
    dropped: dict[str, str] = {}
    mismatched: dict[str, dict[str, list[int]]] = {}
    bad: list[str] = []
    for name, tensor in state.items():
        if name not in own:
            dropped[name] = "not in the model"
            continue
        reason = (
            "not included"
            if include is not None and not matching(include, name)
            else "excluded"
            if matching(exclude, name)
            else None
        )
        if not _same_shape(tensor, own[name]):
            mismatched[name] = {"checkpoint": _shape(tensor), "model": _shape(own[name])}
            if reason is None:
                bad.append(f"{name} ({_shape(tensor)} in the checkpoint, {_shape(own[name])} in the model)")
                continue
        if reason is not None:
            new[name] = dropped[name] = reason
            continue
        loaded[name] = tensor.reshape(own[name].shape).to(own[name].dtype)
    if bad:
        patterns = ", ".join(repr(re.escape(b.split(" ")[0])) for b in bad)
        raise ConfigError(
            f"{key}.init_from: {source}: shape mismatch for tensor(s) {'; '.join(bad)}; "
            f"add them to {key}.exclude (e.g. [{patterns}]) to keep them freshly "
            "initialised"
        )
    new.update({name: "not in the checkpoint" for name in own if name not in state})
    core.load_state_dict({**own, **loaded})
    counts = {
        "loaded": len(loaded),
        "new": len(new),
        "dropped": len(dropped),
        "shape_mismatched": len(mismatched),
        "loaded_values": int(sum(t.numel() for t in loaded.values())),
    }
    return {
        "loaded": sorted(loaded),
        "new": dict(sorted(new.items())),
        "dropped": dict(sorted(dropped.items())),
        "shape_mismatched": dict(sorted(mismatched.items())),
        "counts": counts,
    }
