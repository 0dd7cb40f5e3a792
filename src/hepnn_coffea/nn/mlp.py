"""Multilayer perceptron on a fixed-size vector per entry (jet-level features, trigger networks).

The Belle II neural z-trigger is the classic example: one hidden layer of 81
``tanh`` units on a fixed input vector. The defaults reproduce that shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP"]

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


class MLP(nn.Module):
    """``Linear -> activation`` blocks, then a ``Linear`` output layer.

    Parameters
    ----------
    input_dims
        Length of the input vector (variables of a length-less input group).
    num_outputs
        Number of outputs (classes or regression targets).
    hidden
        Widths of the hidden layers.
    activation
        ``tanh``, ``relu``, ``gelu`` or ``silu``.
    dropout
        Dropout after every hidden layer.
    use_bn
        ``BatchNorm1d`` on the input vector.
    """

    def __init__(
        self,
        input_dims: int,
        num_outputs: int,
        hidden: Sequence[int] = (81,),
        activation: str = "tanh",
        dropout: float = 0.0,
        use_bn: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = [nn.BatchNorm1d(input_dims)] if use_bn else []
        width = int(input_dims)
        for units in hidden:
            layers += [nn.Linear(width, int(units)), ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(float(dropout)))
            width = int(units)
        layers.append(nn.Linear(width, int(num_outputs)))
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``features``: ``(N, input_dims)`` -> ``(N, num_outputs)``."""
        return self.net(features)
