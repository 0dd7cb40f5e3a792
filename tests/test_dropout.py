"""FastDropout: the cheap CPU mask is an i.i.d. Bernoulli mask with the right rate and scale."""

from __future__ import annotations

import pytest
import torch

from hepnn_coffea.nn.dropout import FastDropout, cpu_dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drop_rate_scale_and_independence(p: float) -> None:
    x = torch.ones(200_003)  # not a multiple of 4: the last word is cut
    y = cpu_dropout(x, p, generator=torch.Generator().manual_seed(1))
    dropped = y == 0
    n = x.numel()
    # binomial rate within 5 sigma, and survivors scaled by 1 / (1 - p)
    assert abs(dropped.float().mean().item() - p) < 5 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - p)))
    # each of the four 16-bit slices of a word is a fair draw, and neighbours are uncorrelated
    slices = dropped[: n - n % 4].view(-1, 4).float()
    assert torch.all((slices.mean(dim=0) - p).abs() < 5 * (p * (1 - p) / len(slices)) ** 0.5)
    a, b = dropped[:-1].float(), dropped[1:].float()
    assert abs(((a - p) * (b - p)).mean().item()) < 5 * p * (1 - p) / n**0.5


def test_seeded_gradient_and_modes() -> None:
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(7)
    y1 = FastDropout(0.3).train()(x)
    torch.manual_seed(7)
    y2 = FastDropout(0.3).train()(x)
    assert torch.equal(y1, y2) and (y1 == 0).any()
    y1.sum().backward()
    torch.testing.assert_close(x.grad, (y1 != 0).float() / 0.7)
    assert torch.equal(FastDropout(0.3).eval()(x), x)
    with pytest.raises(ValueError, match="probability"):
        cpu_dropout(x, 1.0)
