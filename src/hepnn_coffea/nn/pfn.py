"""Particle Flow Network (Deep Sets) for jet tagging.

Reference: P. T. Komiske, E. M. Metodiev, J. Thaler, "Energy Flow Networks:
Deep Sets for Particle Jets", JHEP 01 (2019) 121, arXiv:1810.05165.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hepnn_coffea.nn.trimming import exporting

__all__ = ["ParticleFlowNetwork"]


class ParticleFlowNetwork(nn.Module):
    """Particle Flow Network: ``F(sum_i Phi(p_i))`` over the real particles of a jet.

    Per-particle map ``Phi`` is a stack of ``Conv1d(kernel_size=1)`` (+ optional
    ``BatchNorm1d``) + ``ReLU`` layers; the latent vectors of real particles are
    summed, and ``F`` is a stack of
    ``Linear`` + ``ReLU`` layers followed by a final ``Linear`` producing logits.

    Parameters
    ----------
    input_dims : int
        Number of per-particle input features ``C``.
    num_classes : int
        Number of output classes (logits, no softmax).
    phi_sizes : sequence of int, default (128, 128, 128)
        Widths of the per-particle ``Phi`` layers; ``phi_sizes[-1]`` is the latent size.
    f_sizes : sequence of int, default (128, 128, 128)
        Widths of the hidden layers of ``F``.
    use_bn : bool, default True
        Add a ``BatchNorm1d`` over the input features and one after every
        ``Phi`` convolution. This adds ``2 * (input_dims + sum(phi_sizes))``
        trainable parameters (affine weight and bias; 782 for the defaults with
        ``input_dims=7``) plus the same number of running-statistics buffers.
        With ``use_bn=False`` and the defaults, ``input_dims=7``,
        ``num_classes=2`` the model has 83,842 parameters, matching weaver's PFN.

    Notes
    -----
    Inputs follow the weaver convention: ``features`` is ``(N, C, P)`` and
    ``mask`` is ``(N, 1, P)`` with 1 for real particles and 0 for padding.
    In eager mode ``Phi`` runs on the real particles only (rows gathered with the
    mask, summed per jet with ``index_add``); batch-norm statistics are therefore
    those of real particles. While exporting, the padded ``(N, C, P)`` grid path
    runs instead (same weights; identical outputs in eval mode).
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        phi_sizes: Sequence[int] = (128, 128, 128),
        f_sizes: Sequence[int] = (128, 128, 128),
        use_bn: bool = True,
    ) -> None:
        super().__init__()
        if len(phi_sizes) == 0:
            raise ValueError("phi_sizes must contain at least one layer")
        self.input_dims = int(input_dims)
        self.num_classes = int(num_classes)
        self.phi_sizes = tuple(int(s) for s in phi_sizes)
        self.f_sizes = tuple(int(s) for s in f_sizes)
        self.use_bn = bool(use_bn)

        self.input_bn: nn.Module = nn.BatchNorm1d(input_dims) if use_bn else nn.Identity()

        phi_layers: list[nn.Module] = []
        in_chn = self.input_dims
        for out_chn in self.phi_sizes:
            phi_layers.append(
                nn.Sequential(
                    nn.Conv1d(in_chn, out_chn, kernel_size=1),
                    nn.BatchNorm1d(out_chn) if use_bn else nn.Identity(),
                    nn.ReLU(),
                )
            )
            in_chn = out_chn
        self.phi = nn.Sequential(*phi_layers)

        f_layers: list[nn.Module] = []
        in_chn = self.phi_sizes[-1]
        for out_chn in self.f_sizes:
            f_layers.append(nn.Sequential(nn.Linear(in_chn, out_chn), nn.ReLU()))
            in_chn = out_chn
        f_layers.append(nn.Linear(in_chn, self.num_classes))
        self.fc = nn.Sequential(*f_layers)

    def latent(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Return the pooled latent representation ``sum_i Phi(p_i)``.

        Parameters
        ----------
        features : torch.Tensor
            Per-particle features, shape ``(N, C, P)``.
        mask : torch.Tensor
            Particle mask, shape ``(N, 1, P)``; nonzero marks real particles.

        Returns
        -------
        torch.Tensor
            Latent vectors, shape ``(N, phi_sizes[-1])``.
        """
        if exporting():
            m = (mask != 0).to(features.dtype)
            return (self.phi(self.input_bn(features * m)) * m).sum(dim=-1)
        return self._packed_latent(features, mask != 0)

    def _packed_latent(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``Phi`` on the real particles only, as row-wise matmuls, summed per jet.

        The same weights as the ``Conv1d`` grid path (which the ONNX export keeps, so
        the graph has a dynamic particle axis); padded particles cost nothing and do not
        enter the batch-norm statistics.
        """
        jet, particle = mask[:, 0, :].nonzero(as_tuple=True)
        x = self.input_bn(features.permute(0, 2, 1)[jet, particle])  # (M, C) rows
        for conv, norm, act in self.phi:
            x = act(norm(nn.functional.linear(x, conv.weight.squeeze(-1), conv.bias)))
        latent = x.new_zeros((features.shape[0], x.shape[1]))
        return latent.index_add_(0, jet, x)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compute class logits.

        Parameters
        ----------
        features : torch.Tensor
            Per-particle features, shape ``(N, C, P)``.
        mask : torch.Tensor
            Particle mask, shape ``(N, 1, P)``; nonzero marks real particles.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(N, num_classes)``.
        """
        return self.fc(self.latent(features, mask))
