"""Adam/AdamW are torch's: parameter groups, amsgrad and the textbook update."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuner.optim import OptimConfig, build_optimizer, param_groups


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_textbook_adam_example(optimizer: str) -> None:
    """theta = 2, constant gradient 3, lr 1e-3: Adam moves lr per step (m_hat/sqrt(v_hat) = 1)."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    opt = build_optimizer(model, OptimConfig(optimizer=optimizer, lr=1e-3))
    expected = [1.999, 1.998]
    for want in expected:
        model.weight.grad = torch.full_like(model.weight, 3.0)
        opt.step()
        assert model.weight.item() == pytest.approx(want, abs=1e-6)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_one_dimensional_parameters_get_no_weight_decay() -> None:
    model = _model()
    opt = build_optimizer(model, OptimConfig(optimizer="adamw", weight_decay=0.1))
    by_name = {g["name"]: g for g in opt.param_groups}
    assert by_name["decay"]["weight_decay"] == 0.1
    assert by_name["no_decay"]["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in by_name["decay"]["params"])
    assert all(p.dim() == 1 for p in by_name["no_decay"]["params"])
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


def test_decay_1d_puts_everything_in_one_decayed_group() -> None:
    groups = param_groups(_model(), 0.01, decay_1d=True)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("amsgrad", [True, False])
def test_config_passes_through(amsgrad: bool) -> None:
    cfg = OptimConfig(optimizer="adamw", lr=3e-4, beta1=0.85, beta2=0.98, eps=1e-7, amsgrad=amsgrad)
    opt = build_optimizer(_model(), cfg)
    assert isinstance(opt, torch.optim.AdamW)
    for group in opt.param_groups:
        assert group["amsgrad"] is amsgrad
        assert group["lr"] == 3e-4 and group["betas"] == (0.85, 0.98) and group["eps"] == 1e-7
        assert group.get("fused") is True  # fused kernels on CPU (and CUDA): the fastest here


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("amsgrad", [True, False])
def test_the_fused_cpu_kernel_computes_what_the_default_one_does(
    optimizer: str, amsgrad: bool
) -> None:
    cfg = OptimConfig(optimizer=optimizer, lr=1e-2, weight_decay=0.1, amsgrad=amsgrad)
    fused, plain = _model(), _model()
    plain.load_state_dict(fused.state_dict())
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    default = cls(param_groups(plain, 0.1), lr=1e-2, amsgrad=amsgrad)  # foreach/for-loop path
    opts = [build_optimizer(fused, cfg), default]
    torch.manual_seed(0)
    for _ in range(20):
        x = torch.randn(8, 4)
        for model, opt in zip((fused, plain), opts, strict=True):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused.parameters(), plain.parameters(), strict=True):
        rel = ((a - b).norm() / b.norm()).item()
        assert rel <= 1e-5, f"fused vs default: relative difference {rel:.2e}"


def test_adam_is_not_adamw() -> None:
    opt = build_optimizer(_model(), OptimConfig(optimizer="adam", weight_decay=0.1))
    assert type(opt) is torch.optim.Adam


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="use 'adam' or 'adamw'"):
        build_optimizer(_model(), OptimConfig(optimizer="sgd"))
