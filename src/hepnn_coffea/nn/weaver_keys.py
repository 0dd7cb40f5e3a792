"""Parameter names of weaver-core / particle_transformer checkpoints <-> the zoo models'.

weaver-core (``weaver/nn/model/*.py``) and the ParT paper's repository
(``jet-universe/particle_transformer``, ``networks/example_*.py``) save plain
``state_dict`` files; the network configs wrap the model as ``mod`` (keys ``mod.*``),
the fine-tuning configs add a new head ``fc_out`` (ParticleNet) or ``fc`` (ParT) beside
it. :func:`from_weaver` renames such a state dict to the names of our architecture
(the ``core`` of a :class:`hepnn_coffea.nn.Network`, without the ``core.`` prefix);
:func:`to_weaver` goes back (with the ``mod.`` prefix, the layout of the published
checkpoints). Names that no rule matches are kept as they are, so a state dict already
in our layout passes through unchanged. See ``docs/finetuning.md`` for the tables.

============  =================================================  ==========================================
architecture  weaver-core / particle_transformer                 hepnn_coffea
============  =================================================  ==========================================
particlenet   ``edge_convs.i.convs.j.weight``                    ``edge_convs.i.edge_mlp.{3j}.weight``
              ``edge_convs.i.bns.j.*``                           ``edge_convs.i.edge_mlp.{3j+1}.*``
              ``edge_convs.i.sc.weight`` / ``sc_bn.*``           ``edge_convs.i.shortcut.0.weight`` / ``.1.*``
              ``fc_out.*`` (fine-tuning wrapper)                 ``fc.{n_hidden}.*``
part          ``embed.input_bn.*`` / ``embed.embed.n.*``         ``input_bn.*`` / ``embed.n.*``
              ``blocks.i.attn.in_proj_weight`` (or ``.in_proj.   ``blocks.i.qkv.weight`` (``bias``)
              weight``), ``attn.in_proj_bias``
              ``blocks.i.attn.out_proj.*``                       ``blocks.i.out_proj.*``
              ``blocks.i.c_attn`` / ``blocks.i.w_resid``         ``blocks.i.head_scale`` / ``resid_scale``
pcnn          ``fts_conv.0.*`` (input batch norm)                ``input_bn.*``
              ``fts_conv.1.*`` / ``fts_conv.2.*``                ``fts_conv.0.*`` / ``fts_conv.1.*``
              ``resnet_units.resnet_unit_s.u.*`` (``conv_sc``)   ``units.{flat}.*`` (``shortcut``)
pfn           identical names                                    identical names
============  =================================================  ==========================================

Everything else (batch norms, ``bn_fts``, ``fc``, ``pair_embed``, ``cls_token``, ``norm``,
layer norms, feed-forward layers) has the same name on both sides. The ParT fine-tuning
wrapper keeps its head as ``fc.*`` outside ``mod``, which is already our name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["ARCHITECTURES", "WEAVER_PREFIX", "from_weaver", "strip_prefix", "to_weaver"]

#: prefix of the model's tensors in the particle_transformer network configs (``self.mod``)
WEAVER_PREFIX = "mod."
#: architectures with a documented mapping (others: names are kept)
ARCHITECTURES = ("particlenet", "part", "pfn", "pcnn")

T = TypeVar("T")
Rule = tuple[str, Callable[[re.Match[str]], str]]


def strip_prefix(state: Mapping[str, T], prefix: str = WEAVER_PREFIX) -> tuple[dict[str, T], bool]:
    """``state`` with ``prefix`` removed from every key that has it; whether any had it."""
    had = any(k.startswith(prefix) for k in state)
    return {k.removeprefix(prefix): v for k, v in state.items()}, had


def _rename(state: Mapping[str, T], rules: Sequence[Rule]) -> dict[str, T]:
    out: dict[str, T] = {}
    for key, value in state.items():
        for pattern, build in rules:
            if (match := re.fullmatch(pattern, key)) is not None:
                key = build(match)
                break
        if key in out:
            raise ValueError(f"two checkpoint tensors map to the same name {key!r}")
        out[key] = value
    return out


# ------------------------------------------------------------------ ParticleNet
def _n_hidden_fc(keys: Sequence[str]) -> int:
    """Hidden FC blocks ``fc.<i>.0.weight`` (``Sequential(Linear, ReLU, Dropout)``) in ``keys``."""
    return len({m.group(1) for k in keys if (m := re.fullmatch(r"fc\.(\d+)\.0\.weight", k))})


def _particlenet_from(state: Mapping[str, T]) -> dict[str, T]:
    n_hidden = _n_hidden_fc(list(state))
    return _rename(
        state,
        [
            (
                r"edge_convs\.(\d+)\.convs\.(\d+)\.(.+)",
                lambda m: f"edge_convs.{m[1]}.edge_mlp.{3 * int(m[2])}.{m[3]}",
            ),
            (
                r"edge_convs\.(\d+)\.bns\.(\d+)\.(.+)",
                lambda m: f"edge_convs.{m[1]}.edge_mlp.{3 * int(m[2]) + 1}.{m[3]}",
            ),
            (r"edge_convs\.(\d+)\.sc\.(.+)", lambda m: f"edge_convs.{m[1]}.shortcut.0.{m[2]}"),
            (r"edge_convs\.(\d+)\.sc_bn\.(.+)", lambda m: f"edge_convs.{m[1]}.shortcut.1.{m[2]}"),
            (r"fc_out\.(.+)", lambda m: f"fc.{n_hidden}.{m[1]}"),
        ],
    )


def _edge_mlp_layer(m: re.Match[str]) -> str:
    index = int(m[2])
    kind = "convs" if index % 3 == 0 else "bns"
    return f"edge_convs.{m[1]}.{kind}.{index // 3}.{m[3]}"


def _particlenet_to(state: Mapping[str, T]) -> dict[str, T]:
    return _rename(
        state,
        [
            (r"edge_convs\.(\d+)\.edge_mlp\.(\d+)\.(.+)", _edge_mlp_layer),
            (r"edge_convs\.(\d+)\.shortcut\.0\.(.+)", lambda m: f"edge_convs.{m[1]}.sc.{m[2]}"),
            (r"edge_convs\.(\d+)\.shortcut\.1\.(.+)", lambda m: f"edge_convs.{m[1]}.sc_bn.{m[2]}"),
        ],
    )


# ------------------------------------------------------------------ ParT
_PART_FROM: list[Rule] = [
    (r"embed\.input_bn\.(.+)", lambda m: f"input_bn.{m[1]}"),
    (r"embed\.embed\.(.+)", lambda m: f"embed.{m[1]}"),
    (r"(blocks|cls_blocks)\.(\d+)\.attn\.in_proj[_.](weight|bias)", lambda m: f"{m[1]}.{m[2]}.qkv.{m[3]}"),
    (r"(blocks|cls_blocks)\.(\d+)\.attn\.out_proj\.(.+)", lambda m: f"{m[1]}.{m[2]}.out_proj.{m[3]}"),
    (r"(blocks|cls_blocks)\.(\d+)\.c_attn", lambda m: f"{m[1]}.{m[2]}.head_scale"),
    (r"(blocks|cls_blocks)\.(\d+)\.w_resid", lambda m: f"{m[1]}.{m[2]}.resid_scale"),
]
_PART_TO: list[Rule] = [
    (r"input_bn\.(.+)", lambda m: f"embed.input_bn.{m[1]}"),
    (r"embed\.(.+)", lambda m: f"embed.embed.{m[1]}"),
    (r"(blocks|cls_blocks)\.(\d+)\.qkv\.(weight|bias)", lambda m: f"{m[1]}.{m[2]}.attn.in_proj_{m[3]}"),
    (r"(blocks|cls_blocks)\.(\d+)\.out_proj\.(.+)", lambda m: f"{m[1]}.{m[2]}.attn.out_proj.{m[3]}"),
    (r"(blocks|cls_blocks)\.(\d+)\.head_scale", lambda m: f"{m[1]}.{m[2]}.c_attn"),
    (r"(blocks|cls_blocks)\.(\d+)\.resid_scale", lambda m: f"{m[1]}.{m[2]}.w_resid"),
]


# ------------------------------------------------------------------ P-CNN
_PCNN_DEFAULT_STAGES = ((32,), (64, 64), (64, 64), (128, 128))


def _pcnn_from(state: Mapping[str, T]) -> dict[str, T]:
    if any(k.startswith(("input_bn.", "units.")) for k in state):  # already ours (fts_conv.0 is ambiguous)
        return dict(state)
    units = sorted(
        {
            (int(m[1]), int(m[2]))
            for k in state
            if (m := re.fullmatch(r"resnet_units\.resnet_unit_(\d+)\.(\d+)\..+", k))
        }
    )
    flat = {pair: i for i, pair in enumerate(units)}

    def unit(m: re.Match[str]) -> str:
        name = "shortcut" if m[3] == "conv_sc" else m[3]
        return f"units.{flat[(int(m[1]), int(m[2]))]}.{name}{m[4]}"

    return _rename(
        state,
        [
            (r"fts_conv\.0\.(.+)", lambda m: f"input_bn.{m[1]}"),
            (r"fts_conv\.([12])\.(.+)", lambda m: f"fts_conv.{int(m[1]) - 1}.{m[2]}"),
            (r"resnet_units\.resnet_unit_(\d+)\.(\d+)\.(conv_sc|conv1|conv2|bn1|bn2)(\..+)", unit),
        ],
    )


def _pcnn_to(state: Mapping[str, T], stages: Sequence[Sequence[int]]) -> dict[str, T]:
    pairs = [(s, u) for s, widths in enumerate(stages[1:]) for u in range(len(widths))]

    def unit(m: re.Match[str]) -> str:
        index = int(m[1])
        if index >= len(pairs):
            raise ValueError(
                f"P-CNN unit {index} is beyond conv_params {list(stages)}: pass the model's conv_params"
            )
        stage, position = pairs[index]
        name = "conv_sc" if m[2] == "shortcut" else m[2]
        return f"resnet_units.resnet_unit_{stage}.{position}.{name}{m[3]}"

    return _rename(
        state,
        [
            (r"input_bn\.(.+)", lambda m: f"fts_conv.0.{m[1]}"),
            (r"fts_conv\.([01])\.(.+)", lambda m: f"fts_conv.{int(m[1]) + 1}.{m[2]}"),
            (r"units\.(\d+)\.(shortcut|conv1|conv2|bn1|bn2)(\..+)", unit),
        ],
    )


# ------------------------------------------------------------------ API
def _check_arch(arch: str) -> str:
    arch = str(arch).lower()
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"no weaver key mapping for architecture {arch!r}; known: {', '.join(ARCHITECTURES)}"
        )
    return arch


def from_weaver(state: Mapping[str, T], arch: str) -> dict[str, T]:
    """Rename a weaver-core / particle_transformer state dict to our ``arch``'s names.

    Parameters
    ----------
    state
        The checkpoint's ``state_dict``, with or without the ``mod.`` prefix.
    arch
        ``particlenet``, ``part``, ``pfn`` or ``pcnn``.

    Returns
    -------
    dict
        Same values, keys as in ``Network.core.state_dict()`` of that architecture.
        Keys no rule knows are kept (a state dict in our layout passes through).
    """
    arch = _check_arch(arch)
    state, _ = strip_prefix(state)
    if arch == "particlenet":
        return _particlenet_from(state)
    if arch == "part":
        return _rename(state, _PART_FROM)
    if arch == "pcnn":
        return _pcnn_from(state)
    return dict(state)


def to_weaver(
    state: Mapping[str, T], arch: str, *, params: Mapping[str, Any] | None = None, prefix: str = WEAVER_PREFIX
) -> dict[str, T]:
    """Rename our ``arch``'s state dict (``Network.core``) to weaver-core's, keys prefixed ``prefix``.

    Parameters
    ----------
    state
        ``net.core.state_dict()`` (a ``core.`` prefix is removed first).
    arch
        ``particlenet``, ``part``, ``pfn`` or ``pcnn``.
    params
        The model's ``model.params``; P-CNN needs its ``conv_params`` (stage sizes) to
        name the units ``resnet_unit_<stage>.<unit>`` (default: the reference stages).
    prefix
        Put before every key (``"mod."`` as in the published checkpoints, ``""`` for none).
        ParticleNet's output layer stays ``fc.<n>`` (the plain ``ParticleNet`` layout, not
        the fine-tuning wrapper's ``fc_out``).
    """
    arch = _check_arch(arch)
    state, _ = strip_prefix(state, "core.")
    if arch == "particlenet":
        out = _particlenet_to(state)
    elif arch == "part":
        out = _rename(state, _PART_TO)
    elif arch == "pcnn":
        out = _pcnn_to(state, (params or {}).get("conv_params") or _PCNN_DEFAULT_STAGES)
    else:
        out = dict(state)
    return {prefix + k: v for k, v in out.items()}
