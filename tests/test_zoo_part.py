"""Particle Transformer: parameter count, padding invariance, ONNX parity, training step."""

from __future__ import annotations

import pathlib

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hepnn_coffea.nn.part import PairEmbed, ParticleTransformer, pairwise_lv_features, quantile_trim

WEAVER_PARAMS = 2_141_134  # weaver-core ParticleTransformer(input_dim=7, num_classes=2)


def _jets(n: int, p: int, n_real: list[int] | None = None, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random jets (features, four-vectors, mask); jet i has n_real[i] real particles first."""
    g = torch.Generator().manual_seed(seed)
    if n_real is None:
        n_real = torch.randint(1, p + 1, (n,), generator=g).tolist()
    mask = torch.zeros(n, 1, p)
    for i, k in enumerate(n_real):
        mask[i, 0, :k] = 1.0
    pt = -20.0 * torch.log(torch.rand(n, p, generator=g)) + 0.5  # exponential, mean ~20
    eta = 0.4 * torch.randn(n, p, generator=g)
    phi = 0.4 * torch.randn(n, p, generator=g) + 3.0  # straddles the +-pi boundary
    m = 0.14 * torch.rand(n, p, generator=g)
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
    e = torch.sqrt(px**2 + py**2 + pz**2 + m**2)
    vectors = torch.stack((px, py, pz, e), dim=1) * mask
    features = torch.randn(n, 7, p, generator=g) * mask
    return features, vectors, mask


def _warm(model: nn.Module, n_batches: int = 2) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics, then switch to eval mode."""
    model.train()
    with torch.no_grad():
        for i in range(n_batches):
            model(*_jets(8, 32, seed=100 + i))
    return model.eval()


@pytest.fixture(scope="module")
def model() -> ParticleTransformer:
    torch.manual_seed(0)
    return _warm(ParticleTransformer(7, 2))


def test_parameter_count_matches_weaver(model: ParticleTransformer) -> None:
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"ParticleTransformer(7, 2) parameters: {n:,}")
    assert abs(n - WEAVER_PARAMS) <= 0.005 * WEAVER_PARAMS
    assert n == WEAVER_PARAMS


def test_pairwise_features_are_symmetric_and_finite() -> None:
    _, v, _ = _jets(2, 16, n_real=[16, 16])
    fts = pairwise_lv_features(v.unsqueeze(-1), v.unsqueeze(-2))
    assert fts.shape == (2, 4, 16, 16)
    assert torch.isfinite(fts).all()
    torch.testing.assert_close(fts, fts.transpose(-1, -2))


def test_padding_invariance_eval(model: ParticleTransformer) -> None:
    f, v, m = _jets(4, 40, n_real=[40, 25, 7, 1], seed=1)
    with torch.no_grad():
        ref = model(f, v, m)
        junk = 1.0 - m
        f2 = f + 50.0 * torch.randn_like(f) * junk
        v2 = v + 30.0 * torch.rand_like(v) * junk
        out = model(f2, v2, m)
        # extra padding slots must not matter either
        pad = torch.zeros(4, 1, 10)
        f3 = torch.cat((f2, pad.expand(-1, 7, -1) + 3.0), -1)
        v3 = torch.cat((v2, pad.expand(-1, 4, -1) + 1.0), -1)
        out_longer = model(f3, v3, torch.cat((m, pad), -1))
        # single-jet evaluation gives the same logits as in the batch
        solo = model(f[1:2, :, :25], v[1:2, :, :25], m[1:2, :, :25])
    assert torch.isfinite(ref).all()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(out_longer, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(solo, ref[1:2], atol=1e-5, rtol=0)


def test_onnx_export_matches_torch_at_other_shapes(
    model: ParticleTransformer, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "part.onnx"
    names = ["pf_features", "pf_vectors", "pf_mask"]
    torch.onnx.export(
        model,
        _jets(2, 32, seed=2),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=names,
        output_names=["output"],
        dynamic_axes={**{k: {0: "N", 2: "P"} for k in names}, "output": {0: "N"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n, p, seed in ((5, 50, 3), (1, 20, 4)):
        inputs = _jets(n, p, seed=seed)
        with torch.no_grad():
            ref = model(*inputs).numpy()
        out = session.run(None, {k: t.numpy() for k, t in zip(names, inputs)})[0]
        diff = float(np.abs(out - ref).max())
        print(f"ONNX vs torch at N={n}, P={p}: max |diff| = {diff:.2e}")
        assert out.shape == (n, 2)
        assert diff <= 1e-4


def test_training_step_finite_and_trims() -> None:
    torch.manual_seed(1)
    model = ParticleTransformer(7, 2, fc_params=((64, 0.1),))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    f, v, m = _jets(16, 40, n_real=[int(k) for k in torch.randint(1, 30, (16,))], seed=5)
    y = torch.randint(0, 2, (16,))
    model.train()
    losses = []
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(f, v, m), y)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert model.cls_token.grad is not None
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[1] < 10 * losses[0]

    # trimming in training mode keeps real particles and drops only common padding
    scattered = m[:, :, torch.randperm(40)]
    tm, _ = quantile_trim(scattered != 0, (f, v), (1.0, 1.0))
    assert tm.shape[-1] == int(m.sum(-1).max())
    assert torch.equal(tm.sum(-1), (scattered != 0).sum(-1))


def test_triangle_pair_embedding_matches_the_full_grid(model: ParticleTransformer) -> None:
    """Eager path (real lower-triangle pairs, mirrored) == export path (every pair), values and gradients."""
    pe = model.pair_embed
    f, v, m = _jets(6, 30, n_real=[30, 17, 9, 2, 1, 24], seed=7)
    mask = m != 0
    w = torch.randn(6, 8, 30, 30, generator=torch.Generator().manual_seed(8))
    grads, ref = [], None
    for full in (False, True):
        pe.zero_grad()
        out = pe(v, mask, full_grid=full)
        (out * w).sum().backward()
        grads.append([p.grad.clone() for p in pe.parameters()])
        if full:
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        ref = out.detach()
    pair = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    assert torch.equal(ref.masked_fill(pair, 0.0), torch.zeros_like(ref))  # padded pairs carry no bias
    torch.testing.assert_close(ref, ref.transpose(-1, -2))
    for g_tri, g_full in zip(*grads):
        torch.testing.assert_close(g_tri, g_full, atol=1e-4, rtol=1e-4)


def test_pair_embedding_loads_conv2d_checkpoints() -> None:
    torch.manual_seed(3)
    pe = PairEmbed(4, [64, 64, 64, 8]).eval()
    old = {
        k: (t.view(*t.shape, 1) if k.endswith(".weight") and t.ndim == 3 else t)
        for k, t in pe.state_dict().items()
    }
    fresh = PairEmbed(4, [64, 64, 64, 8]).eval()
    fresh.load_state_dict(old)
    _, v, m = _jets(2, 12, seed=9)
    torch.testing.assert_close(fresh(v, m != 0), pe(v, m != 0))


def test_quantile_trim_is_seeded_and_keeps_short_jets() -> None:
    f, v, m = _jets(32, 64, n_real=list(range(2, 66, 2)), seed=10)
    mask = m != 0
    torch.manual_seed(11)
    tm, (tf, tv) = quantile_trim(mask, (f, v), (0.9, 0.9))
    length = int(torch.quantile(mask.sum(-1).flatten().float(), 0.9))
    assert tm.shape[-1] == tf.shape[-1] == tv.shape[-1] == length
    n_real = mask.sum(-1).flatten()
    kept = tm.sum(-1).flatten()
    assert torch.equal(kept, n_real.clamp(max=length))  # short jets whole, long ones cut to a random subset
    short = n_real <= length
    torch.testing.assert_close(tf[short].sum(), f[short].sum())  # ...in their original slots
    torch.manual_seed(11)
    again = quantile_trim(mask, (f, v), (0.9, 0.9))
    assert torch.equal(again[0], tm) and torch.equal(again[1][0], tf)
    full, _ = quantile_trim(mask, (f,), (1.0, 1.02))  # q clamped to 1: nothing is dropped
    assert full.shape[-1] == 64 and torch.equal(full, mask)
