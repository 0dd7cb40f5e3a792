"""DisCo: weighted distance correlation against an independent numpy implementation, and the training hook."""

from __future__ import annotations

import csv
import math
import pathlib

import numpy as np
import pytest
import torch
from torch import nn

from hepnn_coffea.config.data_config import ConfigError
from hepnn_coffea.training.disco import DiscoConfig, DiscoPenalty, distance_correlation
from hepnn_coffea.training.loop import StepSettings, evaluate, step_loss, train_epoch
from tests.conftest import ROOT


def numpy_dcorr2(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """dCorr^2 with explicit loops over pairs (weights normalised to sum to N)."""
    n = len(x)
    w = np.ones(n) if w is None else np.asarray(w, float) * n / np.sum(w)

    def centred(u: np.ndarray) -> list[list[float]]:
        d = [[abs(u[i] - u[j]) for j in range(n)] for i in range(n)]
        row = [sum(w[j] * d[i][j] for j in range(n)) / n for i in range(n)]
        grand = sum(w[i] * row[i] for i in range(n)) / n
        return [[d[i][j] - row[i] - row[j] + grand for j in range(n)] for i in range(n)]

    a, b = centred(x), centred(y)

    def dcov2(p: list[list[float]], q: list[list[float]]) -> float:
        return sum(w[i] * w[j] * p[i][j] * q[i][j] for i in range(n) for j in range(n)) / n**2

    return dcov2(a, b) / math.sqrt(dcov2(a, a) * dcov2(b, b))


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float64)


@pytest.mark.parametrize("weighted", [False, True])
def test_matches_numpy(weighted: bool) -> None:
    rng = np.random.default_rng(5)
    for n in (7, 40):
        x = rng.normal(size=n)
        y = x**2 + rng.normal(scale=0.5, size=n)
        w = rng.uniform(0.1, 3.0, n) if weighted else None
        got = distance_correlation(_t(x), _t(y), None if w is None else _t(w))
        assert float(got) == pytest.approx(numpy_dcorr2(x, y, w), rel=1e-10)


def test_integer_weights_equal_repeated_entries() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=30), rng.normal(size=30)
    y = y + 0.7 * x
    w = rng.integers(1, 4, 30)
    weighted = distance_correlation(_t(x), _t(y), _t(w.astype(float)))
    repeated = distance_correlation(_t(np.repeat(x, w)), _t(np.repeat(y, w)))
    assert float(weighted) == pytest.approx(float(repeated), rel=1e-10)
    scaled = distance_correlation(_t(x), _t(y), _t(w * 0.37))  # only relative weights matter
    assert float(scaled) == pytest.approx(float(weighted), rel=1e-10)


def test_limits() -> None:
    gen = torch.Generator().manual_seed(0)
    x, z = torch.randn(3000, generator=gen), torch.randn(3000, generator=gen)
    assert float(distance_correlation(x, z)) < 0.01  # independent
    assert float(distance_correlation(x, -3 * x + 2)) == pytest.approx(1.0, abs=1e-5)  # linear
    assert float(distance_correlation(x, x**2)) > 0.1  # dependent, Pearson-uncorrelated
    assert float(distance_correlation(x, torch.full_like(x, 4.0))) == 0.0  # constant: 0, not NaN
    with pytest.raises(ValueError, match="same length"):
        distance_correlation(x, z[:10])


def test_gradient_flows() -> None:
    gen = torch.Generator().manual_seed(1)
    mass = torch.rand(200, generator=gen) * 200
    score = (mass / 200 + 0.3 * torch.randn(200, generator=gen)).requires_grad_(True)
    d = distance_correlation(score, mass)
    d.backward()
    assert score.grad is not None and torch.isfinite(score.grad).all() and score.grad.abs().sum() > 0
    const = torch.zeros(50, requires_grad=True)
    distance_correlation(const, torch.rand(50)).backward()
    assert torch.isfinite(const.grad).all()
    # a gradient step on the score lowers the correlation
    with torch.no_grad():
        moved = score - 50.0 * score.grad
    assert float(distance_correlation(moved, mass)) < float(d.detach())


# ----------------------------------------------------------------------------- config


def test_config() -> None:
    labels = ["top", "w", "qcd"]
    cfg = DiscoConfig.from_dict(
        {"lambda": 10, "variable": "msd", "background": "qcd", "signal": "top"}, labels, ["msd"]
    )
    assert cfg == DiscoConfig(10.0, "msd", 2, (0,))
    assert DiscoConfig.from_dict({"lambda": 1, "variable": "msd", "background": "qcd"}, labels).signal == (
        0,
        1,
    )
    assert DiscoConfig.from_dict(None, labels) is None
    bad = [
        ({"lambda": 1, "variable": "msd", "background": "qcd", "mass": 1}, "unknown key"),
        ({"lambda": -1, "variable": "msd", "background": "qcd"}, r"disco\.lambda"),
        ({"lambda": "x", "variable": "msd", "background": "qcd"}, r"disco\.lambda"),
        ({"lambda": 1, "variable": "pt", "background": "qcd"}, r"disco\.variable"),
        ({"lambda": 1, "variable": "msd", "background": "QCD"}, r"disco\.background"),
        ({"lambda": 1, "variable": "msd", "background": "qcd", "signal": ["qcd"]}, r"disco\.signal"),
        ({"lambda": 1, "variable": "msd", "background": "qcd", "signal": ["z"]}, r"disco\.signal"),
    ]
    for raw, message in bad:
        with pytest.raises(ConfigError, match=message):
            DiscoConfig.from_dict(raw, labels, ["msd"])


# ----------------------------------------------------------------------------- training step


class _Batches:
    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def batches(self, batch_size: int):
        yield self.batch


def _batch(n: int = 64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    target = torch.randint(0, 3, (n,), generator=gen)
    return {
        "f": torch.randn(n, 4, generator=gen),
        "target": target,
        "observers/msd": torch.rand(n, generator=gen) * 250,
        "weight": torch.rand(n, generator=gen) + 0.5,
    }


def test_step_loss_adds_lambda_times_dcorr() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    batch = _batch()
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    off = StepSettings(torch.device("cpu"))
    on = StepSettings(torch.device("cpu"), penalty=DiscoPenalty(DiscoConfig(10.0, "msd", 2, (0, 1))))
    out = net(batch["f"])
    loss_off, value_off = step_loss(out, batch, batch["target"], loss_fn, off)
    loss_on, value = step_loss(out, batch, batch["target"], loss_fn, on)
    assert value_off is None

    probs = torch.softmax(out.detach(), 1).double().numpy()
    bkg = batch["target"].numpy() == 2
    disc = (probs[:, 0] + probs[:, 1]) / (probs[:, 0] + probs[:, 1] + probs[:, 2])
    expected = numpy_dcorr2(
        disc[bkg], batch["observers/msd"].double().numpy()[bkg], batch["weight"].double().numpy()[bkg]
    )
    assert value == pytest.approx(expected, rel=1e-4)
    assert float((loss_on - loss_off).detach()) == pytest.approx(10.0 * expected, rel=1e-4)
    loss_on.backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()

    # lambda 0: monitored, the loss unchanged
    zero = StepSettings(torch.device("cpu"), penalty=DiscoPenalty(DiscoConfig(0.0, "msd", 2, (0, 1))))
    loss_zero, value_zero = step_loss(out, batch, batch["target"], loss_fn, zero)
    assert float(loss_zero.detach()) == pytest.approx(
        float(loss_off.detach())
    ) and value_zero == pytest.approx(value)
    # fewer than two background jets: no term
    few = {**batch, "target": torch.zeros_like(batch["target"])}
    assert step_loss(out, few, few["target"], loss_fn, on)[1] is None


def test_train_epoch_and_evaluate_report_disco() -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    batch = _batch()
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    penalty = DiscoPenalty(DiscoConfig(5.0, "msd", 2, (0,)))
    s = StepSettings(torch.device("cpu"), penalty=penalty)
    with torch.no_grad():
        expected_loss, expected_value = step_loss(net(batch["f"]), batch, batch["target"], loss_fn, s)
    plain = evaluate(
        net, ["f"], _Batches(batch), loss_fn, "classification", 64, StepSettings(torch.device("cpu"))
    )
    val = evaluate(net, ["f"], _Batches(batch), loss_fn, "classification", 64, s)
    assert val["disco"] == pytest.approx(expected_value, rel=1e-5)
    assert val["loss"] == pytest.approx(plain["loss"] + 5.0 * expected_value, rel=1e-5)
    # evaluate weights entries by "weight" like the train loss does
    assert val["loss"] == pytest.approx(float(expected_loss), rel=1e-5)

    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    row = train_epoch(net, ["f"], [batch], loss_fn, optimizer, scheduler, None, s)
    assert row["train_loss"] == pytest.approx(float(expected_loss), rel=1e-5)
    assert row["train_disco"] == pytest.approx(expected_value, rel=1e-5)


def test_train_with_disco(shards: pathlib.Path, tmp_path: pathlib.Path) -> None:
    from hepnn_coffea.training.trainer import train

    n_threads = torch.get_num_threads()
    disco = {"lambda": 10.0, "variable": "jet_sdmass", "background": "jet_isQCD", "signal": ["jet_isTop"]}
    overrides = {
        "model": {"params": {"phi_sizes": [16], "f_sizes": [16]}},
        "training": {"epochs": 1, "batch_size": 128, "num_threads": 1, "tensorboard": False, "disco": disco},
    }
    try:
        train(ROOT / "models" / "pfn.yaml", shards, tmp_path / "run", overrides=overrides, progress=False)
        with pytest.raises(ConfigError, match=r"disco\.variable.*jet_msoftdrop"):
            train(
                ROOT / "models" / "pfn.yaml",
                shards,
                tmp_path / "bad",
                progress=False,
                overrides={
                    "training": {**overrides["training"], "disco": {**disco, "variable": "jet_msoftdrop"}}
                },
            )
    finally:
        torch.set_num_threads(n_threads)
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    assert 0 <= float(rows[0]["train_disco"]) <= 1 and 0 <= float(rows[0]["val_disco"]) <= 1
    assert float(rows[0]["val_loss"]) > 10.0 * float(rows[0]["val_disco"])
