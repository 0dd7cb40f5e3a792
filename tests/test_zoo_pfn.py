"""PFN: padding invariance, and the packed-rows training path against the padded grid the export runs."""

from __future__ import annotations

import pytest
import torch

from hepnn_coffea.nn.pfn import ParticleFlowNetwork
from tests.test_models import _jets


def test_pfn_padding_invariance_without_bn() -> None:
    torch.manual_seed(3)
    net = ParticleFlowNetwork(7, 2, use_bn=False).eval()
    jets = _jets(4, 20, n_real=[20, 5, 1, 12], seed=4)
    feats = jets["pf_features"].clone()
    feats[jets["pf_mask"].expand_as(feats) == 0] = 1e3
    with torch.no_grad():
        torch.testing.assert_close(
            net(feats, jets["pf_mask"]), net(jets["pf_features"], jets["pf_mask"]), rtol=0, atol=1e-6
        )
        # extra padding slots appended at the end change nothing either
        wider_f = torch.cat([jets["pf_features"], torch.randn(4, 7, 9)], dim=-1)
        wider_m = torch.cat([jets["pf_mask"], torch.zeros(4, 1, 9)], dim=-1)
        torch.testing.assert_close(
            net(wider_f, wider_m), net(jets["pf_features"], jets["pf_mask"]), rtol=0, atol=1e-5
        )


def _pfn_grid(net: ParticleFlowNetwork, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The padded-grid path (what the ONNX export runs), written out."""
    m = (mask != 0).to(feats.dtype)
    return net.fc((net.phi(net.input_bn(feats * m)) * m).sum(dim=-1))


@pytest.mark.parametrize("use_bn", [False, True])
def test_pfn_packed_rows_match_the_padded_grid(use_bn: bool) -> None:
    torch.manual_seed(5)
    jets = _jets(8, 40, n_real=[40, 33, 20, 9, 5, 2, 1, 27], seed=6)
    feats, mask = jets["pf_features"], jets["pf_mask"]
    net = ParticleFlowNetwork(7, 2, use_bn=use_bn)
    with torch.no_grad():  # non-trivial running statistics
        net(feats + 1.0, mask)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(feats, mask), _pfn_grid(net, feats, mask), rtol=0, atol=1e-5)
    # training: same loss and gradients as the grid (no BN: padding is inert there too)
    if not use_bn:
        net.train()
        grads = []
        for forward in (net, lambda f, m: _pfn_grid(net, f, m)):
            net.zero_grad()
            forward(feats, mask).square().sum().backward()
            grads.append([p.grad.clone() for p in net.parameters()])
        for packed, grid in zip(*grads):
            torch.testing.assert_close(packed, grid, rtol=1e-5, atol=1e-5)
    else:  # batch-norm statistics come from the real particles only
        net.train()
        bn = net.input_bn
        bn.reset_running_stats()
        bn.momentum = 1.0
        net(feats, mask)
        real = feats.permute(0, 2, 1)[mask[:, 0] != 0]
        torch.testing.assert_close(bn.running_mean, real.mean(dim=0), rtol=1e-5, atol=1e-6)
