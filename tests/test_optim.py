"""Optimizers (AdamW, RAdam, Ranger = Lookahead(RAdam), ...) and the flat+decay scheduler."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from hepnn_coffea.training.optim import OPTIMIZERS, Lookahead, build_optimizer, build_scheduler


@pytest.mark.parametrize("name", ["adamw", "ranger", "radam", "adam", "sgd", "AdamW"])
def test_build_optimizer_names(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    before = [p.detach().clone() for p in model.parameters()]
    opt = build_optimizer(model.parameters(), name, lr=1e-2, weight_decay=1e-4)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(1e-4)
    if name == "ranger":
        assert isinstance(opt, Lookahead) and isinstance(opt.optimizer, torch.optim.RAdam)
        assert opt.param_groups is opt.optimizer.param_groups
    for _ in range(6):  # 6 steps: includes one lookahead synchronisation for ranger
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_optimizer_list_is_complete() -> None:
    assert set(OPTIMIZERS) == {"adamw", "adam", "radam", "ranger", "sgd"}  # the names base.yaml documents
    for name in OPTIMIZERS:
        opt = build_optimizer(nn.Linear(2, 2).parameters(), name, lr=1e-3)
        assert isinstance(opt, torch.optim.Optimizer) and opt.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_build_optimizer_unknown_name() -> None:
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(nn.Linear(2, 2).parameters(), "lion", lr=1e-3)


def test_ranger_state_roundtrip_is_exact() -> None:
    torch.manual_seed(0)
    a = nn.Linear(4, 2)
    b = nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    opt_a = build_optimizer(a.parameters(), "ranger", lr=1e-2)
    data = [torch.randn(8, 4) for _ in range(10)]

    def step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> None:
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()

    for x in data[:4]:  # mid-way through a lookahead period (k = 6)
        step(a, opt_a, x)
    b.load_state_dict(a.state_dict())
    opt_b = build_optimizer(b.parameters(), "ranger", lr=1e-2)
    # through bytes, as a checkpoint would (a live state_dict shares its 'step' tensors)
    buf = io.BytesIO()
    torch.save(opt_a.state_dict(), buf)
    buf.seek(0)
    opt_b.load_state_dict(torch.load(buf, weights_only=False))
    assert opt_b._la_step == 4 and len(opt_b._slow) == 2
    for x in data[4:]:
        step(a, opt_a, x)
        step(b, opt_b, x)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(
    ("optimizer", "epochs", "steps"),
    [("adamw", 3, 10), ("ranger", 1, 7), ("sgd", 4, 1), ("adam", 1, 1), ("sgd", 2, 1), ("sgd", 1, 3)],
)
def test_flat_decay_scheduler(optimizer: str, epochs: int, steps: int) -> None:
    model = nn.Linear(2, 2)
    opt = build_optimizer(model.parameters(), optimizer, lr=0.5)
    sched = build_scheduler(opt, "flat+decay", epochs, steps)
    total = epochs * steps
    used = []
    for _ in range(total):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert used[0] == pytest.approx(0.5)
    flat = int(0.7 * (total - 1))  # ~70 % of the steps at the start LR, and the last one always decayed
    assert all(lr == pytest.approx(0.5) for lr in used[: flat + 1])
    assert all(x >= y for x, y in zip(used, used[1:]))
    if total > 1:
        assert used[-1] == pytest.approx(0.005)  # 1 % of the start LR at the last step
    assert opt.param_groups[0]["lr"] == pytest.approx(0.005)  # and it stays there


def test_scheduler_rejects_unknown_and_bad_lengths() -> None:
    opt = build_optimizer(nn.Linear(2, 2).parameters(), "adam", lr=0.1)
    with pytest.raises(ValueError, match="warmup-linear"):
        build_scheduler(opt, "warmup-linear", 2, 3)
    with pytest.raises(ValueError):
        build_scheduler(opt, "flat+decay", 0, 3)
