"""P-CNN: a 1D ResNet over the (ordered) particle sequence of a jet.

Reference: the P-CNN baseline of H. Qu, C. Li, S. Qian, "Particle Transformer for
Jet Tagging", ICML 2022, arXiv:2202.03772 (Table 3: 354k parameters), in the form of
``ResNet`` in ``networks/example_PCNN.py`` of github.com/jet-universe/particle_transformer
(``conv_params=[(32,), (64, 64), (64, 64), (128, 128)]``, ``fc_params=[(512, 0.2)]``).

This implementation has the same layers and parameter count as that reference,
and in addition keeps padded particles out of the computation: their slots are
zeroed after every convolution block (the mask is downsampled with the strided
convolutions) and the global pooling averages over real particles only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ParticleCNN", "ResNetUnit", "REFERENCE_NUM_PARAMS"]

#: Trainable parameters of the reference ``ResNet`` (example_PCNN.py defaults) for
#: ``(input_dims, num_classes)``: JetClass full inputs (17 features, 10 classes) give
#: 354,540 (the "354k" of arXiv:2202.03772, Table 3); the top-tagging "kin" inputs
#: (7 features, 2 classes) give 349,456.
REFERENCE_NUM_PARAMS: dict[tuple[int, int], int] = {(17, 10): 354_540, (7, 2): 349_456}


def _downsample_mask(mask: torch.Tensor, stride: int) -> torch.Tensor:
    """Mask of a ``kernel_size=3, padding=1`` (or 1x1) conv output with ``stride``.

    Output position ``i`` is centred on input ``stride * i``, so it is real iff that input is.
    """
    return mask if stride == 1 else mask[:, :, ::stride]


class ResNetUnit(nn.Module):
    """Residual unit: two ``Conv1d(k=3) + BatchNorm1d + ReLU`` layers plus a shortcut.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels.
    stride : int, default 1
        Stride of the first convolution (and of the 1x1 shortcut convolution).

    Notes
    -----
    ``forward(x, mask)`` returns ``(y, mask_out)``; padded slots of ``y`` are zero.
    The shortcut is the identity when shapes match, else a bias-free 1x1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = int(stride)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size=3, stride=self.stride, padding=1)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU()
        if in_channels == out_channels and self.stride == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Conv1d(
                in_channels, out_channels, kernel_size=1, stride=self.stride, bias=False
            )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply the unit to ``x`` (N, C, P) whose padded slots are zero; ``mask`` is (N, 1, P)."""
        mask = _downsample_mask(mask, self.stride)
        y = self.relu(self.bn1(self.conv1(x))) * mask
        y = self.relu(self.bn2(self.conv2(y)))
        return (self.shortcut(x) + y) * mask, mask


class ParticleCNN(nn.Module):
    """P-CNN jet classifier (1D ResNet, as the ParT paper's baseline).

    Parameters
    ----------
    input_dims : int
        Number of per-particle input features ``C``.
    num_classes : int
        Number of output classes.
    conv_params : sequence of sequence of int
        ``conv_params[0] = (c0,)`` is the width of the initial ``Conv1d(k=3)``; every
        later entry is one stage, one :class:`ResNetUnit` per listed width. The first
        unit of every stage but the first has stride 2.
    fc_params : sequence of (int, float)
        ``(units, dropout)`` per hidden fully connected layer.
    for_inference : bool, default False
        Append a softmax (the model then returns probabilities, not logits).

    Notes
    -----
    Inputs follow the weaver convention: ``features`` is ``(N, C, P)`` and ``mask``
    ``(N, 1, P)`` with 1 for real particles and 0 for padding. The network is
    sensitive to particle order (as the reference: particles sorted by pT, padding
    at the end). Padded slots are zeroed after the input batch norm and after every
    convolution layer, so in eval mode their content and number do not change the
    output; the reference ``ResNet`` masks only the inputs and averages over all slots.

    With the defaults, ``input_dims=7`` and ``num_classes=2`` the model has 349,456
    trainable parameters, exactly the reference ``ResNet`` of
    jet-universe/particle_transformer ``networks/example_PCNN.py`` for those inputs;
    with 17 features and 10 classes (JetClass) it has 354,540, the 354k quoted for
    P-CNN in arXiv:2202.03772, Table 3 (see :data:`REFERENCE_NUM_PARAMS`).
    """

    def __init__(
        self,
        input_dims: int,
        num_classes: int,
        conv_params: Sequence[Sequence[int]] = ((32,), (64, 64), (64, 64), (128, 128)),
        fc_params: Sequence[tuple[int, float]] = ((512, 0.2),),
        for_inference: bool = False,
    ) -> None:
        super().__init__()
        conv_params = [tuple(int(c) for c in stage) for stage in conv_params]
        if len(conv_params) < 1 or len(conv_params[0]) != 1 or any(len(s) == 0 for s in conv_params):
            raise ValueError(
                "conv_params must start with a 1-tuple (initial conv width) and have non-empty stages"
            )
        self.input_dims = int(input_dims)
        self.num_classes = int(num_classes)
        self.conv_params = tuple(conv_params)
        self.fc_params = tuple((int(u), float(d)) for u, d in fc_params)
        self.for_inference = bool(for_inference)

        c0 = conv_params[0][0]
        self.input_bn = nn.BatchNorm1d(self.input_dims)
        self.fts_conv = nn.Sequential(
            nn.Conv1d(self.input_dims, c0, kernel_size=3, stride=1, padding=1), nn.BatchNorm1d(c0), nn.ReLU()
        )

        self.units = nn.ModuleList()
        in_chn = c0
        for i, stage in enumerate(conv_params[1:]):
            for j, out_chn in enumerate(stage):
                stride = 2 if (j == 0 and i > 0) else 1
                self.units.append(ResNetUnit(in_chn, out_chn, stride))
                in_chn = out_chn

        fcs: list[nn.Module] = []
        for units, drop_rate in self.fc_params:
            fcs.append(nn.Sequential(nn.Linear(in_chn, units), nn.ReLU(), nn.Dropout(drop_rate)))
            in_chn = units
        fcs.append(nn.Linear(in_chn, self.num_classes))
        if self.for_inference:
            fcs.append(nn.Softmax(dim=1))
        self.fc = nn.Sequential(*fcs)

    def latent(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked global average of the last stage's output, shape ``(N, C_last)``.

        Parameters
        ----------
        features : torch.Tensor
            Per-particle features, shape ``(N, C, P)``.
        mask : torch.Tensor
            Particle mask, shape ``(N, 1, P)``; nonzero marks real particles.
        """
        m = (mask != 0).to(features.dtype)
        x = self.input_bn(features * m) * m
        x = self.fts_conv(x) * m
        for unit in self.units:
            x, m = unit(x, m)
        counts = m.sum(dim=-1).clamp(min=1.0)  # (N, 1)
        return x.sum(dim=-1) / counts

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compute class logits (probabilities if ``for_inference``).

        Parameters
        ----------
        features : torch.Tensor
            Per-particle features, shape ``(N, C, P)``.
        mask : torch.Tensor
            Particle mask, shape ``(N, 1, P)``; nonzero marks real particles.

        Returns
        -------
        torch.Tensor
            Shape ``(N, num_classes)``.
        """
        return self.fc(self.latent(features, mask))
