"""Dropout whose CPU mask is cheap to draw.

On CPU, ``torch.nn.Dropout`` draws its mask with ``bernoulli_``, one random float
per element; for the attention weights of ParT (``N x H x P x P``, ~10M elements per
block at batch 128) that is a quarter of the whole CPU training step. Here every
64-bit random word gives four 16-bit uniform integers, and an element is dropped when
its integer falls below ``round(p * 65536) - 32768``: the same i.i.d. Bernoulli mask
(drop probability quantised to 1/65536), ~5x faster to draw, from the same seeded
torch generator (forward + backward of a 10M-element dropout: ~25% less CPU time). On
other devices, in eval mode and while exporting it is ``torch.nn.Dropout``.
"""

from __future__ import annotations

import torch
from torch import nn

from hepnn_coffea.nn.trimming import exporting

__all__ = ["FastDropout", "cpu_dropout"]

_INT16_SPAN = 65536
_INT64_LOW, _INT64_HIGH = -(2**63), 2**63 - 1


def cpu_dropout(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each element of ``x`` with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Parameters
    ----------
    x : torch.Tensor
        A CPU tensor.
    p : float
        Drop probability, ``0 <= p < 1``.
    generator : torch.Generator, optional
        Random generator (default: torch's global one).
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    n = x.numel()
    words = torch.randint(_INT64_LOW, _INT64_HIGH, ((n + 3) // 4,), dtype=torch.int64, generator=generator)
    uniform16 = words.view(torch.int16)[:n].view(x.shape)
    keep = uniform16 >= int(round(p * _INT16_SPAN)) - _INT16_SPAN // 2
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p))  # a float multiplier: one mul forward and backward


class FastDropout(nn.Dropout):
    """``torch.nn.Dropout`` with :func:`cpu_dropout` for CPU tensors in training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace or exporting():
            return super().forward(x)
        return cpu_dropout(x, self.p)
