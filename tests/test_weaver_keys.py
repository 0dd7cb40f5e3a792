"""weaver-core / particle_transformer checkpoints in the zoo: key mapping and outputs of the loaded models.

The reference networks below are written from the published architectures (weaver-core's
``ParticleNet``, particle_transformer's ``networks/example_PCNN.py`` and ``example_PFN.py``) with
weaver's parameter names, independently of ``hepnn_coffea.nn``.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
import torch
from torch import nn

from hepnn_coffea.nn import weaver_keys
from hepnn_coffea.nn.weaver_keys import from_weaver, to_weaver
from tests.conftest import ROOT

CKPT = ROOT.parent / "shared" / "pretrained" / "ParticleNet_JetClass_kin.pt"
needs_checkpoint = pytest.mark.skipif(
    not CKPT.is_file(), reason="needs ../shared/pretrained beside the repository"
)
JETCLASS = [
    "label_QCD",
    "label_Hbb",
    "label_Hcc",
    "label_Hgg",
    "label_H4q",
    "label_Hqql",
    "label_Zqq",
    "label_Wqq",
    "label_Tbqq",
    "label_Tbl",
]


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and batch-norm statistics (so a wrong mapping shows in the outputs); eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(
                    torch.rand(t.shape, generator=g) + 0.5
                    if "running_var" in name
                    else torch.randn(t.shape, generator=g) * 0.3
                )
    return model.eval()


def _zoo(name: str, n_classes: int = 3, **params: object) -> nn.Module:
    from hepnn_coffea.nn import ARCHITECTURES

    shapes = {"features": (7, 16), "points": (2, 16), "mask": (1, 16), "vectors": (4, 16)}
    return ARCHITECTURES[name].build(shapes, n_classes, dict(params))


SMALL = {
    "particlenet": {"conv_params": [(4, (8, 8)), (4, (16, 16))], "fc_params": [(16, 0.1)]},
    "part": {
        "embed_dims": (16, 16),
        "pair_embed_dims": (8,),
        "num_heads": 2,
        "num_layers": 2,
        "num_cls_layers": 1,
        "fc_params": [(16, 0.1)],
    },
    "pfn": {"phi_sizes": (8, 8), "f_sizes": (8,)},
    "pcnn": {"conv_params": [(8,), (8, 8), (16, 16)], "fc_params": [(16, 0.1)]},
}


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("arch", sorted(SMALL))
def test_key_mapping_round_trip(arch: str) -> None:
    state = _zoo(arch, **SMALL[arch]).state_dict()
    weaver = to_weaver(state, arch, params=SMALL[arch])
    assert all(k.startswith("mod.") for k in weaver)
    back = from_weaver(weaver, arch)
    assert list(back) == list(state)
    assert all(back[k] is state[k] for k in state)  # the same tensors, renamed only
    assert (
        from_weaver({k.removeprefix("mod."): v for k, v in weaver.items()}, arch) == back
    )  # prefix optional
    assert from_weaver(state, arch) == dict(state)  # our own layout passes through
    if arch != "pfn":
        assert set(weaver) != {f"mod.{k}" for k in state}, "the layouts differ, so the mapping did something"


def test_part_names_follow_weaver() -> None:
    weaver = to_weaver(_zoo("part", **SMALL["part"]).state_dict(), "part")
    for key in (
        "embed.input_bn.running_mean",
        "embed.embed.1.weight",
        "pair_embed.embed.0.running_var",
        "blocks.0.attn.in_proj_weight",
        "blocks.1.attn.out_proj.bias",
        "blocks.0.c_attn",
        "blocks.0.w_resid",
        "cls_blocks.0.attn.in_proj_bias",
        "cls_blocks.0.fc2.weight",
        "cls_token",
        "norm.weight",
        "fc.1.weight",
    ):
        assert f"mod.{key}" in weaver, key
    # newer weaver-core saves its own Attention's Linear as attn.in_proj.{weight,bias}
    newer = {"mod.blocks.3.attn.in_proj.weight": 1, "mod.cls_blocks.0.attn.in_proj.bias": 2}
    assert from_weaver(newer, "part") == {"blocks.3.qkv.weight": 1, "cls_blocks.0.qkv.bias": 2}


def test_particlenet_finetune_wrapper_head_is_our_last_fc() -> None:
    state = {"mod.fc.0.0.weight": 1, "mod.fc.0.0.bias": 2, "fc_out.weight": 3, "fc_out.bias": 4}
    assert from_weaver(state, "particlenet") == {
        "fc.0.0.weight": 1,
        "fc.0.0.bias": 2,
        "fc.1.weight": 3,
        "fc.1.bias": 4,
    }


def test_unknown_architecture_is_an_error() -> None:
    with pytest.raises(ValueError, match="no weaver key mapping for architecture 'mlp'"):
        from_weaver({}, "mlp")
    assert set(weaver_keys.ARCHITECTURES) == {"particlenet", "part", "pfn", "pcnn"}


# ------------------------------------------------------------------ P-CNN and PFN: reference modules
class _RefUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv1d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm1d(cout)
        self.conv2, self.bn2 = nn.Conv1d(cout, cout, 3, padding=1), nn.BatchNorm1d(cout)
        self.conv_sc = (
            nn.Conv1d(cin, cout, 1, stride=stride, bias=False) if cin != cout or stride != 1 else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        return (x if self.conv_sc is None else self.conv_sc(x)) + y


class _RefResNet(nn.Module):
    """example_PCNN.py's ResNet layout: fts_conv = [BN, Conv, BN, ReLU], resnet_units.resnet_unit_<s>.<u>."""

    def __init__(
        self, dims: int, n_cls: int, conv_params: list[tuple[int, ...]], fc: list[tuple[int, float]]
    ) -> None:
        super().__init__()
        c0 = conv_params[0][0]
        self.fts_conv = nn.Sequential(
            nn.BatchNorm1d(dims), nn.Conv1d(dims, c0, 3, padding=1), nn.BatchNorm1d(c0), nn.ReLU()
        )
        self.resnet_units = nn.ModuleDict()
        for s, widths in enumerate(conv_params[1:]):
            ins = [conv_params[s][-1], *widths[:-1]]
            self.resnet_units[f"resnet_unit_{s}"] = nn.Sequential(
                *(_RefUnit(i, o, 2 if u == 0 and s > 0 else 1) for u, (i, o) in enumerate(zip(ins, widths)))
            )
        layers: list[nn.Module] = []
        width = conv_params[-1][-1]
        for units, drop in fc:
            layers.append(nn.Sequential(nn.Linear(width, units), nn.ReLU(), nn.Dropout(drop)))
            width = units
        self.fc = nn.Sequential(*layers, nn.Linear(width, n_cls))

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.fts_conv(features * mask)
        for stage in self.resnet_units.values():
            x = stage(x)
        return self.fc(x.mean(dim=-1))


class _RefPFN(nn.Module):
    """example_PFN.py's layout: input_bn, phi.<i> = [Conv1d, BN, ReLU], fc."""

    def __init__(self, dims: int, n_cls: int, phi: list[int], f: list[int]) -> None:
        super().__init__()
        self.input_bn = nn.BatchNorm1d(dims)
        self.phi = nn.Sequential(
            *(
                nn.Sequential(nn.Conv1d(i, o, 1), nn.BatchNorm1d(o), nn.ReLU())
                for i, o in zip([dims, *phi[:-1]], phi)
            )
        )
        self.fc = nn.Sequential(
            *(nn.Sequential(nn.Linear(i, o), nn.ReLU()) for i, o in zip([phi[-1], *f[:-1]], f)),
            nn.Linear(f[-1], n_cls),
        )

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc((self.phi(self.input_bn(features)) * mask).sum(dim=-1))


@pytest.mark.parametrize("arch", ["pcnn", "pfn"])
def test_reference_checkpoint_loads_and_gives_the_same_outputs(arch: str) -> None:
    p = SMALL[arch]
    ref = (
        _RefResNet(7, 3, p["conv_params"], p["fc_params"])
        if arch == "pcnn"
        else _RefPFN(7, 3, list(p["phi_sizes"]), list(p["f_sizes"]))
    )
    _randomise(ref)
    checkpoint = {f"mod.{k}": v for k, v in ref.state_dict().items()}  # as the wrapper network saves it
    ours = _zoo(arch, **p).eval()
    ours.load_state_dict(from_weaver(checkpoint, arch))  # strict: every name and shape matches
    assert set(to_weaver(ours.state_dict(), arch, params=p)) == set(checkpoint)
    features = torch.randn(5, 7, 16, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(5, 1, 16)  # full-length jets: our P-CNN also masks padding, the reference does not
    with torch.no_grad():
        torch.testing.assert_close(ours(features, mask), ref(features, mask), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ ParticleNet: the published checkpoint
def reference_particlenet(
    w: dict[str, torch.Tensor], points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, k: int = 16
) -> torch.Tensor:
    """weaver-core's ParticleNet (3 EdgeConv blocks, use_fts_bn, use_counts, no fusion, one hidden FC) in
    eval mode, computed from its state dict ``w`` (names without ``mod.``) in float64, channels last: kNN
    by distances from coordinate differences (self excluded, padded points at 1e9), edge features
    ``[x_i, x_j - x_i]``, 1x1 convolutions + batch norm + ReLU, mean over neighbours, shortcut conv +
    batch norm, ReLU, mean over real particles, FC + ReLU, output layer."""

    def affine(name: str, weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch norm ``name`` in eval mode (after the 1x1 convolution ``weight``) as ``x @ m + c``."""
        scale = w[f"{name}.weight"] / torch.sqrt(w[f"{name}.running_var"] + 1e-5)
        m = torch.diag(scale) if weight is None else weight.flatten(1).T * scale
        return m, w[f"{name}.bias"] - w[f"{name}.running_mean"] * scale

    pad = (mask == 0).transpose(1, 2)  # (N, P, 1)
    fts = torch.addmm(affine("bn_fts")[1], features.transpose(1, 2).flatten(0, 1), affine("bn_fts")[0])
    fts = fts.view(len(features), -1, features.shape[1]).masked_fill(pad, 0.0)  # (N, P, C), channels last
    for b in range(3):
        coords = (points.transpose(1, 2) if b == 0 else fts).masked_fill(pad, 1e9)
        dist = torch.cdist(
            coords, coords, compute_mode="donot_use_mm_for_euclid_dist"
        )  # (N, P, P), differences
        idx = dist.topk(k + 1, dim=-1, largest=False).indices[..., 1:]  # (N, P, k)
        neighbours = fts[torch.arange(len(fts)).view(-1, 1, 1), idx]  # (N, P, k, C)
        centre = fts.unsqueeze(2).expand_as(neighbours)
        x = torch.cat((centre, neighbours - centre), dim=-1)
        for j in range(3):
            m, c = affine(f"edge_convs.{b}.bns.{j}", w[f"edge_convs.{b}.convs.{j}.weight"])
            x = torch.relu(x @ m + c)
        m, c = affine(f"edge_convs.{b}.sc_bn", w[f"edge_convs.{b}.sc.weight"])
        fts = torch.relu(fts @ m + c + x.mean(dim=2)).masked_fill(pad, 0.0)
    pooled = fts.sum(dim=1) / (~pad).sum(dim=1).clamp(min=1)
    hidden = torch.relu(pooled @ w["fc.0.0.weight"].T + w["fc.0.0.bias"])
    return hidden @ w["fc.1.weight"].T + w["fc.1.bias"]


@needs_checkpoint
def test_checkpoint_keys_are_exactly_our_particlenet() -> None:
    checkpoint = torch.load(CKPT, map_location="cpu", weights_only=True)
    ours = _zoo("particlenet", 10).state_dict()  # the zoo defaults are the published architecture
    mapped = to_weaver(ours, "particlenet")
    assert set(mapped) == set(checkpoint) and len(checkpoint) == 81  # the same names
    assert all(mapped[k].shape == checkpoint[k].shape for k in checkpoint)


@needs_checkpoint
def test_jetclass_particlenet_matches_the_reference_forward_pass(shards: pathlib.Path) -> None:
    from hepnn_coffea.config.finetune_config import FinetuneConfig
    from hepnn_coffea.evaluation.sculpting import discriminant, weighted_auc
    from hepnn_coffea.nn import build_network
    from hepnn_coffea.training.dataset import ShardDataset
    from hepnn_coffea.training.finetune import FineTuner

    groups = ["pf_points", "pf_features", "pf_mask"]
    ds = ShardDataset(shards, "test", groups)
    ds.keep_subset(200, 0)
    data = ds.gather(ds.rows)
    net = build_network(
        {"name": "particlenet", "inputs": dict(zip(("points", "features", "mask"), groups))},
        ds.input_shapes(),
        len(JETCLASS),
    ).eval()
    report = FineTuner(FinetuneConfig(init_from=str(CKPT)), net, "particlenet").report
    assert report["counts"]["loaded"] == 81 and not report["new"] and not report["dropped"]
    checkpoint = torch.load(CKPT, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("mod."): v.double() for k, v in checkpoint.items()}
    order = np.argsort(data["pf_mask"].sum(axis=(1, 2)), kind="stable")  # chunks of similar multiplicity,
    chunks = [order[i : i + 25] for i in range(0, len(order), 25)]  # each cut to its longest jet
    inputs = [
        [
            torch.from_numpy(data[g][c][..., : max(17, int(data["pf_mask"][c].sum(axis=-1).max()))])
            for g in groups
        ]
        for c in chunks
    ]

    def run(model: object, dtype: torch.dtype) -> torch.Tensor:
        with torch.no_grad():
            out = torch.cat([torch.softmax(model(*(t.to(dtype) for t in x)), dim=1) for x in inputs]).double()
        return out[np.argsort(np.concatenate(chunks))]

    float32 = run(net, torch.float32)
    float64 = run(net.double(), torch.float64)
    ref_p = run(lambda *x: reference_particlenet(weights, *x), torch.float64)
    # the same function: in float64 equal to rounding; in float32 a near-tie in a kNN ranking may
    # swap a neighbour of a jet or two (3.6e-3 for 1 of these 200 jets), all others agree to < 1e-5
    assert (float64 - ref_p).abs().max() < 1e-10, "10-class outputs differ from the reference"
    per_jet = (float32 - ref_p).abs().max(dim=1).values
    assert (per_jet > 1e-5).sum() <= 2 and per_jet.max() < 1e-2
    assert ref_p.std(dim=0).max() > 0.1  # not a constant output
    is_top = data["target"] == 0  # top_kin labels: [jet_isTop, jet_isQCD]
    disc = discriminant(
        ref_p[:, JETCLASS.index("label_Tbqq")].numpy(), ref_p[:, JETCLASS.index("label_QCD")].numpy()
    )
    assert weighted_auc(disc, is_top, np.ones(len(disc))) > 0.95  # the checkpoint tags these tops zero-shot
