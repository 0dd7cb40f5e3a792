"""Fine-tuning: start from a checkpoint, freeze tensors, per-group learning rates, training stages.

Applies a model config's ``finetune:`` section (:class:`~hepnn_coffea.config.finetune_config.FinetuneConfig`)
to a freshly built :class:`~hepnn_coffea.nn.Network`. The trainer uses three hooks::

    tuner = FineTuner(typed.finetune, net, typed.model.name, load=not resume)   # loads, checks, reports
    optimizer = build_optimizer(tuner.param_groups(lr), ...)                    # lr_mult groups
    tuner.start_epoch(epoch)                                                    # the stage's trainable set

and :meth:`FineTuner.write_report` saves ``RUN/finetune.json``: the checkpoint (path, sha256,
format), loaded / newly initialised / dropped / shape-mismatched tensors, the frozen tensors,
the learning-rate groups and the stage schedule. A parameter is trained in an epoch when it
matches the epoch's stage ``train`` patterns (all, without stages) and no ``freeze`` pattern;
a batch norm none of whose tensors is trained runs in eval mode (its running statistics are
used and kept), so a frozen block is a fixed function.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any

from hepnn_coffea._optional import missing_extra
from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.config.finetune_config import FinetuneConfig
from hepnn_coffea.processing.shards import write_json
from hepnn_coffea.training.checkpoint_init import check_patterns, load_selected, matching, read_checkpoint

try:
    import torch
    from torch import nn
except ModuleNotFoundError as err:  # without the [train] extra: say what to install
    raise missing_extra(err, "train") from None

__all__ = ["REPORT", "FineTuner"]

log = logging.getLogger(__name__)

#: the report's file name in the run directory
REPORT = "finetune.json"
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _frozen_bn_pre_hook(module: nn.Module, args: Any) -> None:
    """Run a batch norm whose tensors are all frozen in eval mode (set again on every call)."""
    if getattr(module, "_hepnn_frozen", False):
        module.training = False


class FineTuner:
    """The ``finetune`` section applied to one network (a no-op for ``config=None``).

    Parameters
    ----------
    config
        The checked section, or ``None``.
    net
        The network (a :class:`~hepnn_coffea.nn.Network`: its ``core`` holds the architecture;
        any other module is used as is). Patterns match the core's tensor names.
    arch
        The architecture (``model.name``), for weaver key names.
    load
        Load ``init_from`` (``False`` when resuming: the weights come from ``last.pt``).
    key
        The config key errors name (``finetune``).
    """

    def __init__(
        self,
        config: FinetuneConfig | None,
        net: nn.Module,
        arch: str,
        *,
        load: bool = True,
        key: str = "finetune",
    ) -> None:
        self.config = config or FinetuneConfig()
        self.core: nn.Module = getattr(net, "core", net)
        self.key = key
        self.active = config is not None
        self.stage: int | None = -1  # the stage applied last (None: after the stages); -1: none yet
        self.report: dict[str, Any] = {}
        if not self.active:
            return
        cfg = self.config
        if cfg.init_from is not None and load:
            state, info = read_checkpoint(cfg.init_from, arch, cfg.checkpoint, f"{key}.init_from")
            self.report.update(info)
            self.report.update(
                load_selected(
                    self.core,
                    state,
                    include=cfg.include,
                    exclude=cfg.exclude,
                    source=info["init_from"],
                    key=key,
                )
            )
        params = [n for n, _ in self.core.named_parameters()]
        tensors = list(self.core.state_dict())
        check_patterns(cfg.freeze, tensors, f"{key}.freeze", "tensor of the model")
        check_patterns(list(cfg.lr_mult), params, f"{key}.lr_mult", "parameter of the model")
        for i, stage in enumerate(cfg.stages):
            check_patterns(stage.train, params, f"{key}.stages[{i}].train", "parameter of the model")
        self._norms = {name: m for name, m in self.core.named_modules() if isinstance(m, _BATCH_NORMS)}
        if (
            cfg.stages
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        ):
            raise ConfigError(
                f"{key}.stages: not supported under torchrun (DDP keeps the parameters trainable "
                "when it wraps the model); use finetune.freeze, or train the stages as separate runs"
            )
        if cfg.freeze or cfg.stages:
            for module in self._norms.values():
                module.register_forward_pre_hook(_frozen_bn_pre_hook)
        self.report["frozen"] = [n for n in tensors if matching(cfg.freeze, n)]
        self.start_epoch(0)

    # ------------------------------------------------------------------ trainable sets
    def trained(self, name: str, epoch: int) -> bool:
        """Whether tensor ``name`` (of the core) trains in 0-based ``epoch``."""
        if matching(self.config.freeze, name):
            return False
        stage = self.config.stage_at(epoch)
        return stage is None or matching(stage[1].train, name)

    def start_epoch(self, epoch: int) -> None:
        """Set ``requires_grad`` and the batch norms' frozen flag for 0-based ``epoch``'s stage."""
        if not self.active:
            return
        for name, param in self.core.named_parameters():
            param.requires_grad_(self.trained(name, epoch))
        for prefix, module in self._norms.items():
            names = [f"{prefix}.{n}" for n, _ in module.named_parameters()]
            names += [
                f"{prefix}.{n}"
                for n in ("running_mean", "running_var")
                if getattr(module, n, None) is not None
            ]
            module._hepnn_frozen = not any(self.trained(n, epoch) for n in names)  # type: ignore[assignment]
        stage = self.config.stage_at(epoch)
        index = stage[0] if stage is not None else None
        if self.stage != index:
            trainable = sum(p.numel() for p in self.core.parameters() if p.requires_grad)
            total = sum(p.numel() for p in self.core.parameters())
            where = (
                f"stage {index + 1}/{len(self.config.stages)}"
                if index is not None
                else "all stages done"
                if self.config.stages
                else "no stages"
            )
            log.info(
                "finetune: epoch %d (%s): %s of %s parameters trained",
                epoch + 1,
                where,
                f"{trainable:,}",
                f"{total:,}",
            )
        self.stage = index

    # ------------------------------------------------------------------ optimizer
    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: one per ``lr_mult`` factor (``lr * factor``) plus the rest at ``lr``.

        Every parameter is in a group (frozen ones too: they have no gradient, so optimizers
        skip them, and a later stage can train them). Without ``lr_mult``: one group (and
        without a ``finetune`` section exactly the optimizer's default single group).
        """
        if not self.active:
            return [{"params": list(self.core.parameters())}]
        groups: dict[float, list[tuple[str, nn.Parameter]]] = {}
        for name, param in self.core.named_parameters():
            factor = next((float(f) for p, f in self.config.lr_mult.items() if matching([p], name)), 1.0)
            groups.setdefault(factor, []).append((name, param))
        out = [
            {"params": [p for _, p in members], "lr": lr * factor, "lr_mult": factor}
            for factor, members in sorted(groups.items())
        ]
        self.report["lr_groups"] = [
            {
                "lr_mult": g["lr_mult"],
                "lr": g["lr"],
                "parameters": len(g["params"]),
                "values": int(sum(p.numel() for p in g["params"])),
                "names": [n for n, _ in groups[g["lr_mult"]]] if g["lr_mult"] != 1.0 else None,
            }
            for g in out
        ]
        return out

    # ------------------------------------------------------------------ report
    def schedule(self, epochs: int) -> list[dict[str, Any]]:
        """The stage of every epoch range up to ``epochs``: ``first_epoch``, ``last_epoch`` (1-based),
        ``train``."""
        rows: list[dict[str, Any]] = []
        start = 0
        for i, stage in enumerate(self.config.stages):
            stop = epochs if stage.epochs is None else min(start + stage.epochs, epochs)
            if start < stop:
                rows.append(
                    {"stage": i + 1, "first_epoch": start + 1, "last_epoch": stop, "train": stage.train}
                )
            start = stop
        if start < epochs and (not self.config.stages or self.config.stages[-1].epochs is not None):
            rows.append({"stage": None, "first_epoch": start + 1, "last_epoch": epochs, "train": [".*"]})
        return rows

    def summary(self) -> str:
        """A few lines for the terminal: what was loaded, frozen and scaled."""
        r, lines = self.report, []
        if "counts" in r:
            c = r["counts"]
            lines.append(
                f"finetune: {c['loaded']} tensors ({c['loaded_values']:,} values) loaded from "
                f"{r['init_from']} [{r['format']}]"
            )
            for what in ("new", "dropped"):
                if r[what]:
                    listed = ", ".join(f"{n} ({why})" for n, why in list(r[what].items())[:6])
                    more = f", ... {len(r[what]) - 6} more" if len(r[what]) > 6 else ""
                    label = "newly initialised" if what == "new" else "dropped"
                    lines.append(f"  {label}: {len(r[what])}: {listed}{more}")
            if r["shape_mismatched"]:
                lines.append(
                    "  shape-mismatched (not loaded): "
                    + ", ".join(
                        f"{n} {s['checkpoint']} -> {s['model']}" for n, s in r["shape_mismatched"].items()
                    )
                )
        if r.get("frozen"):
            lines.append(f"  frozen: {len(r['frozen'])} tensors")
        for g in r.get("lr_groups", []):
            if g["lr_mult"] != 1.0:
                lines.append(
                    f"  lr x{g['lr_mult']:g} = {g['lr']:.3g} for {g['parameters']} parameters: "
                    f"{', '.join(g['names'][:4])}{' ...' if len(g['names']) > 4 else ''}"
                )
        return "\n".join(lines)

    def write_report(self, run_dir: str | pathlib.Path, epochs: int) -> pathlib.Path | None:
        """Save the report as ``RUN/finetune.json`` and print its summary; ``None`` when inactive."""
        if not self.active:
            return None
        payload = {"config": self.config.to_dict(), **self.report, "stages": self.schedule(epochs)}
        path = write_json(pathlib.Path(run_dir) / REPORT, payload)
        print(self.summary(), flush=True)
        return path
