"""Validation metrics and run logs (CSV + tensorboard)."""

from __future__ import annotations

import csv
import pathlib
from typing import Any

import numpy as np


def classification_metrics(
    probs: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> dict[str, float]:
    """Accuracy and one-vs-rest AUC of class 0 (signal) vs the rest."""
    from sklearn.metrics import roc_auc_score

    out = {"acc": float(np.average(probs.argmax(axis=1) == labels, weights=weights))}
    is_signal = labels == 0
    if 0 < is_signal.sum() < len(labels):
        out["auc"] = float(roc_auc_score(is_signal, probs[:, 0], sample_weight=weights))
    else:
        out["auc"] = float("nan")
    return out


class RunLogger:
    """Appends one row per epoch to ``metrics.csv`` and mirrors scalars to tensorboard."""

    def __init__(self, run_dir: pathlib.Path, use_tensorboard: bool = True) -> None:
        self.csv_path = run_dir / "metrics.csv"
        self.writer = None
        if use_tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_epoch(self, row: dict[str, Any]) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.writer.flush()

    def log_step(self, step: int, **scalars: float) -> None:
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | pathlib.Path) -> list[dict[str, str]]:
    """Rows of a run's ``metrics.csv``."""
    with (pathlib.Path(run_dir) / "metrics.csv").open() as f:
        return list(csv.DictReader(f))
