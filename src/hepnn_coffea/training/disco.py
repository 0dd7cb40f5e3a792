"""DisCo mass decorrelation: a distance-correlation penalty on the background's discriminant.

Kasieczka & Shih, "DisCo Fever: Robust Networks Through Distance Correlation"
(arXiv:2001.05310): the loss gets ``lambda * dCorr^2_w(d, m)`` where ``d`` is the tagger's
discriminant and ``m`` the jet mass of the background jets of the batch, so the network
cannot sculpt the background mass distribution. Configured in the model config::

    training:
      disco:
        lambda: 10.0                # strength (0: only monitored)
        variable: FatJet_msoftdrop  # an observer stored in the shards
        background: QCD             # the background class (a label name)
        signal: [top]               # label name(s); default: every class but the background

The discriminant is ``sum(p_signal) / (sum(p_signal) + p_background)`` of the softmax
outputs. Batches with fewer than two background jets add nothing. The validation loss
includes the same term; ``train_disco`` and ``val_disco`` in ``metrics.csv`` are the
per-batch mean of ``dCorr^2`` (without ``lambda``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.processing.shards import OBSERVER_PREFIX

try:
    import torch
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

_KEYS = {"lambda", "variable", "background", "signal"}


def distance_correlation(
    x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """Weighted squared distance correlation ``dCorr^2_w(x, y)`` (differentiable).

    As in the DisCo reference implementation (``power=1``): with ``a_ij = |x_i - x_j|``,
    weights ``w`` normalised to sum to ``N`` and weighted double centring
    ``A_ij = a_ij - abar_i - abar_j + abar`` (``abar_i = mean_j w_j a_ij``,
    ``abar = mean_i w_i abar_i``), ``dCov^2(x, y) = mean_ij w_i w_j A_ij B_ij`` and
    ``dCorr^2 = dCov^2(x, y) / sqrt(dCov^2(x, x) dCov^2(y, y))``, in [0, 1]: 0 for
    independent variables (large ``N``), 1 for a linear relation.

    Parameters
    ----------
    x, y
        1D tensors of the same length ``N`` (memory ``O(N^2)``).
    weights
        Non-negative per-entry weights (default: all 1).
    eps
        Floor of ``dCov^2(x, x) dCov^2(y, y)`` (a constant variable gives 0, not NaN).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    x, y = x.reshape(-1), y.reshape(-1)
    if x.shape != y.shape:
        raise ValueError(
            f"distance_correlation: x and y need the same length, got {x.numel()} and {y.numel()}"
        )
    n = x.numel()
    w = torch.ones_like(x) if weights is None else weights.reshape(-1).to(x.dtype)
    w = w * (n / w.sum())

    def centred(values: torch.Tensor) -> torch.Tensor:
        dist = (values[:, None] - values[None, :]).abs()
        row = (dist * w[None, :]).mean(dim=1)
        return dist - row[:, None] - row[None, :] + (row * w).mean()

    a, b = centred(x), centred(y)
    ww = w[:, None] * w[None, :]
    ab, aa, bb = (a * b * ww).mean(), (a * a * ww).mean(), (b * b * ww).mean()
    return ab / (aa * bb).clamp_min(eps).sqrt()


@dataclass(frozen=True)
class DiscoConfig:
    """The ``training.disco`` mapping, validated (see the module docstring)."""

    lam: float
    variable: str
    background: int
    signal: tuple[int, ...]

    @classmethod
    def from_dict(
        cls, raw: Any, label_names: list[str], observers: list[str] | None = None
    ) -> DiscoConfig | None:
        """Validate ``training.disco``; ``None`` when absent. Errors name the key."""
        if raw is None:
            return None
        where = "training.disco"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a mapping with keys {sorted(_KEYS)}, got {raw!r}")
        unknown = set(raw) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(map(str, unknown))}; allowed {sorted(_KEYS)}")
        lam = raw.get("lambda")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise ConfigError(f"{where}.lambda: expected a number >= 0, got {lam!r}")
        variable = raw.get("variable")
        if not isinstance(variable, str) or not variable:
            raise ConfigError(f"{where}.variable: expected the name of an observer, got {variable!r}")
        if observers is not None and variable not in observers:
            raise ConfigError(
                f"{where}.variable: '{variable}' is not an observer of the shards {observers} "
                "(add it to the data config's observers)"
            )
        background = raw.get("background")
        if background not in label_names:
            raise ConfigError(f"{where}.background: {background!r} is not one of the labels {label_names}")
        signal = raw.get("signal")
        signal = [n for n in label_names if n != background] if signal is None else signal
        signal = [signal] if isinstance(signal, str) else signal
        if (
            not isinstance(signal, list)
            or not signal
            or any(s not in label_names or s == background for s in signal)
        ):
            raise ConfigError(
                f"{where}.signal: expected label name(s) other than the background "
                f"'{background}' among {label_names}, got {raw.get('signal')!r}"
            )
        return cls(
            float(lam), variable, label_names.index(background), tuple(label_names.index(s) for s in signal)
        )


class DiscoPenalty:
    """Batch-level DisCo term for :class:`~hepnn_coffea.training.loop.StepSettings` ``penalty``.

    Called as ``penalty(logits, batch)``; returns ``(lambda * dCorr^2, dCorr^2 detached)`` or
    ``None`` when the batch has fewer than two background jets. The batch must carry
    ``observers/<variable>`` (see :meth:`ShardDataset.carry`).
    """

    name = "disco"

    def __init__(self, config: DiscoConfig) -> None:
        self.config = config
        self.field = OBSERVER_PREFIX + config.variable

    def discriminant(self, logits: torch.Tensor) -> torch.Tensor:
        """``sum(p_signal) / (sum(p_signal) + p_background)`` of the softmax outputs."""
        probs = torch.softmax(logits.float(), dim=1)
        sig = probs[:, list(self.config.signal)].sum(dim=1)
        return sig / (sig + probs[:, self.config.background]).clamp_min(1e-12)

    def value(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """``dCorr^2_w`` of the background jets' discriminant and variable (``None``: < 2 of them)."""
        background = batch["target"].to(logits.device) == self.config.background
        if int(background.sum()) < 2:
            return None
        mass = batch[self.field].to(logits.device).float()[background]
        weight = batch.get("weight")
        weight = weight.to(logits.device).float()[background] if weight is not None else None
        return distance_correlation(self.discriminant(logits)[background], mass, weight)

    def __call__(
        self, logits: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, float] | None:
        value = self.value(logits, batch)
        if value is None:
            return None
        return self.config.lam * value, float(value.detach())


def disco_penalty(raw: Any, label_names: list[str], task: str, datasets: list[Any]) -> DiscoPenalty | None:
    """The penalty of ``training.disco`` (``None`` without one); the datasets then carry its observer.

    Parameters
    ----------
    raw
        The ``training.disco`` value.
    label_names
        The shards' class labels.
    task
        The model config's task (DisCo needs ``classification``).
    datasets
        :class:`~hepnn_coffea.training.dataset.ShardDataset` objects whose batches need the observer.
    """
    if raw is None:
        return None
    if task != "classification":
        raise ConfigError(f"training.disco: needs task classification, got {task!r}")
    observers = list(datasets[0].manifest.get("observers") or []) if datasets else None
    config = DiscoConfig.from_dict(raw, label_names, observers)
    for dataset in datasets:
        dataset.carry([OBSERVER_PREFIX + config.variable])
    return DiscoPenalty(config)
