"""Optimizers and learning-rate schedulers (weaver-core compatible choices).

All schedulers returned by :func:`build_scheduler` are meant to be stepped
once per *optimizer step* (i.e. per batch), not once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.training_config import OPTIMIZERS, SCHEDULERS

try:
    import torch
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

__all__ = ["Lookahead", "build_optimizer", "build_scheduler", "OPTIMIZERS", "SCHEDULERS"]


class Lookahead(Optimizer):
    """Lookahead wrapper (Zhang et al. 2019) around an inner optimizer.

    Every ``k`` steps the slow weights move towards the fast weights,
    ``slow += alpha * (fast - slow)``, and the fast weights are reset to them.
    ``param_groups``, ``defaults`` and ``state`` are shared with the inner
    optimizer, so LR schedulers act on it directly.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Inner ("fast") optimizer.
    k : int, default 6
        Synchronisation period in steps.
    alpha : float, default 0.5
        Slow-weight step size, in ``[0, 1]``.
    """

    def __init__(self, optimizer: Optimizer, k: int = 6, alpha: float = 0.5) -> None:
        if k < 1:
            raise ValueError(f"Lookahead k must be >= 1, got {k}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must be in [0, 1], got {alpha}")
        self.optimizer = optimizer
        self.k = int(k)
        self.alpha = float(alpha)
        self._la_step = 0
        self._slow: dict[torch.Tensor, torch.Tensor] = {}
        self._ready = False
        super().__init__(optimizer.param_groups, optimizer.defaults)
        self._sync()
        self._ready = True

    def _sync(self) -> None:
        # inner.load_state_dict() replaces these containers, so re-share them
        self.param_groups = self.optimizer.param_groups
        self.defaults = self.optimizer.defaults
        self.state = self.optimizer.state

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the inner optimizer."""
        if self._ready:
            self.optimizer.add_param_group(param_group)
            self._sync()
        else:  # called by Optimizer.__init__ on the (already shared) groups
            super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:
        """Run one inner step, then a lookahead update every ``k`` steps."""
        for p in self._params():
            if p not in self._slow:
                self._slow[p] = p.detach().clone()
        if closure is None:
            loss = self.optimizer.step()
        else:
            with torch.enable_grad():
                loss = self.optimizer.step(closure)
        self._la_step += 1
        if self._la_step % self.k == 0:
            for p in self._params():
                if not p.requires_grad:  # frozen (fine-tuning): keep it exactly, its slow copy follows later
                    self._slow[p].copy_(p.detach())
                    continue
                slow = self._slow[p]
                slow.add_(p.detach() - slow, alpha=self.alpha)
                p.copy_(slow)
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Inner state dict plus a ``"lookahead"`` entry (k, alpha, counter, slow weights)."""
        sd = self.optimizer.state_dict()
        slow = [self._slow[p].clone() if p in self._slow else None for p in self._params()]
        sd["lookahead"] = {"k": self.k, "alpha": self.alpha, "step": self._la_step, "slow": slow}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict` (slow weights included)."""
        state_dict = dict(state_dict)
        la = state_dict.pop("lookahead", None)
        self.optimizer.load_state_dict(state_dict)
        self._sync()
        self._slow = {}
        self._la_step = 0
        if la is None:
            return
        self.k, self.alpha, self._la_step = int(la["k"]), float(la["alpha"]), int(la["step"])
        params = self._params()
        if len(la["slow"]) != len(params):
            raise ValueError("lookahead state does not match the number of parameters")
        for p, s in zip(params, la["slow"]):
            if s is not None:
                self._slow[p] = s.detach().to(device=p.device, dtype=p.dtype).clone()


def build_optimizer(
    params: Iterable[Any], name: str, lr: float, weight_decay: float = 0.0, **options: Any
) -> Optimizer:
    """Build an optimizer by name.

    Parameters
    ----------
    params : iterable
        Parameters or parameter-group dicts.
    name : {"adamw", "adam", "radam", "ranger", "sgd"}
        ``"ranger"`` is RAdam (betas (0.95, 0.999), eps 1e-5, decoupled weight
        decay) wrapped in :class:`Lookahead` (k=6, alpha=0.5), as in weaver-core.
        ``"adam"``/``"radam"`` use L2 weight decay, ``"adamw"`` decoupled one,
        ``"sgd"`` has momentum 0.9.
    lr, weight_decay : float
        Learning rate and weight decay.
    **options
        Forwarded to the torch constructor (overriding the defaults above);
        for ``"ranger"`` also ``k`` and ``alpha``.

    Returns
    -------
    torch.optim.Optimizer
    """
    key = name.lower()
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **options)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **options)
    if key == "radam":
        return torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay, **options)
    if key == "ranger":
        k, alpha = options.pop("k", 6), options.pop("alpha", 0.5)
        opts = {"betas": (0.95, 0.999), "eps": 1e-5, "decoupled_weight_decay": True, **options}
        inner = torch.optim.RAdam(params, lr=lr, weight_decay=weight_decay, **opts)
        return Lookahead(inner, k=k, alpha=alpha)
    if key == "sgd":
        opts = {"momentum": 0.9, **options}
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, **opts)
    raise ValueError(f"unknown optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")


def build_scheduler(
    optimizer: Optimizer, name: str, epochs: int, steps_per_epoch: int, warmup_steps: int = 0, **options: Any
) -> LRScheduler:
    """Build an LR scheduler to be stepped once per *optimizer step* (per batch).

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
    name : {"none", "flat+decay", "cosine", "one-cycle"}
        ``"none"``: constant LR. ``"flat+decay"``: start LR for the first 70 %
        of the ``epochs * steps_per_epoch`` steps, then exponential decay reaching
        1 % of it at the last step (computed from steps, so 1 epoch works).
        ``"cosine"``: linear warm-up over ``warmup_steps`` then cosine to 0.
        ``"one-cycle"``: :class:`torch.optim.lr_scheduler.OneCycleLR` with
        ``total_steps = epochs * steps_per_epoch`` and ``max_lr`` the groups'
        current LR; stepping it more than that raises.
    epochs, steps_per_epoch : int
        Training length; both must be >= 1.
    warmup_steps : int, default 0
        Warm-up length for ``"cosine"``; for ``"one-cycle"``, if > 0, it sets
        ``pct_start``. Ignored otherwise.
    **options
        Only for ``"one-cycle"``: forwarded to ``OneCycleLR``.

    Returns
    -------
    torch.optim.lr_scheduler.LRScheduler
    """
    if epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs}, {steps_per_epoch}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    key = name.lower()
    if key not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; allowed: {', '.join(SCHEDULERS)}")
    total = epochs * steps_per_epoch
    if key == "one-cycle":
        opts: dict[str, Any] = {"max_lr": [g["lr"] for g in optimizer.param_groups]}
        if warmup_steps > 0:
            opts["pct_start"] = min(warmup_steps / total, 1.0)
        opts.update(options)
        return OneCycleLR(optimizer, total_steps=total, **opts)
    if options:
        raise TypeError(f"unexpected options for scheduler {name!r}: {sorted(options)}")
    if key == "none":
        return LambdaLR(optimizer, lambda step: 1.0)
    if key == "flat+decay":
        flat = min(int(0.7 * total), max(total - 2, 0))
        decay = max(1, total - 1 - flat)  # last used step (total - 1) gets 1 %

        def flat_decay(step: int) -> float:
            return 0.01 ** (min(max(step - flat, 0), decay) / decay)

        return LambdaLR(optimizer, flat_decay)

    def cosine(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(1, total - warmup_steps), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, cosine)
