"""Mixed precision: autocast per precision, fp16 loss scaling in trials and populations, the
fp16 eps floor, and the precision in the recommendation's snippet. Runs on CPU (bf16 and fp16
autocast and ``torch.amp.GradScaler("cpu")`` exist there)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tuner import train
from tuner.optim import OptimConfig, build_optimizer, build_scheduler
from tuner.population import MemberHyperparameters, VectorisedAdam, run_population
from tuner.population import scaler as population_scaler
from tuner.population.scaler import MemberGradScaler
from tuner.snippet import render_snippet
from tuner.space import fp16_eps_range, resolve_space
from tuner.spec import JobSpec, resolve_precision
from tuner.train import TrainSettings, autocast, grad_scaler, run_trial
from tuner.workloads import get

Batch = tuple[torch.Tensor, torch.Tensor]


class LoudRegression:
    """regression_mlp with its loss multiplied by ``factor``: fp16 gradients overflow at
    GradScaler's initial scale of 2**16 until the scale has backed off."""

    vmappable = True

    def __init__(self, factor: float):
        self.base, self.factor = get("regression_mlp"), factor
        self.name = f"loud_regression_{factor:g}"

    def make_model(self, seed: int) -> nn.Module:
        return self.base.make_model(seed)

    def train_batches(self, seed: int) -> Iterator[Batch]:
        return self.base.train_batches(seed)

    def val_batches(self) -> list[Batch]:
        return self.base.val_batches()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs, targets) * self.factor


def test_auto_is_bf16_on_cuda_and_fp32_elsewhere() -> None:
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp16", "cpu") == "fp16"
    assert TrainSettings(10, 5, seed=0).precision == "fp32"
    assert TrainSettings(10, 5, seed=0, device="cuda:0").precision == "bf16"
    spec = JobSpec(workload="regression_mlp", precision="fp16")
    assert TrainSettings.from_spec(spec).precision == "fp16"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        TrainSettings(10, 5, seed=0, precision="fp8")


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)],
)
def test_autocast_runs_matmuls_in_the_precision(precision: str, dtype: torch.dtype) -> None:
    a = torch.randn(4, 4)
    with autocast(torch.device("cpu"), precision):
        assert (a @ a).dtype == dtype
    assert grad_scaler(torch.device("cpu"), precision).is_enabled() == (precision == "fp16")


def loop(workload: object, precision: str, grad_clip: float | None = None) -> train._Loop:
    torch.manual_seed(0)
    w = workload  # a Workload
    model = w.make_model(0)  # type: ignore[attr-defined]
    cfg = OptimConfig(lr=1e-3)
    optimizer = build_optimizer(model, cfg)
    return train._Loop(
        w,  # type: ignore[arg-type]
        model,
        optimizer,
        build_scheduler(optimizer, cfg, 50),
        w.train_batches(0),  # type: ignore[attr-defined]
        torch.device("cpu"),
        grad_clip,
        precision,
    )


def test_fp16_gradients_are_unscaled_before_clipping(monkeypatch: pytest.MonkeyPatch) -> None:
    norms: list[float] = []
    clip = nn.utils.clip_grad_norm_

    def recording_clip(params: object, max_norm: float) -> torch.Tensor:
        params = list(params)  # type: ignore[call-overload]
        norms.append(float(torch.cat([p.grad.flatten() for p in params]).norm()))
        return clip(params, max_norm)

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", recording_clip)
    workload = get("regression_mlp")
    for precision in ("fp32", "fp16"):
        loop(workload, precision, grad_clip=100.0).train_step()
    fp32, fp16 = norms
    assert fp16 == pytest.approx(fp32, rel=0.02)  # scaled, it would be 65536 times larger


def test_fp16_optimizer_state_holds_true_gradients() -> None:
    """The diagnostics read exp_avg / exp_avg_sq: they must not carry the loss scale."""
    workload = get("regression_mlp")
    states = []
    for precision in ("fp32", "fp16"):
        run = loop(workload, precision)
        for _ in range(3):
            run.train_step()
        assert run.skipped_steps == 0
        state = [run.optimizer.state[p] for p in run.model.parameters()]
        states.append(torch.cat([s["exp_avg_sq"].flatten() for s in state]).sum().item())
    assert states[1] == pytest.approx(states[0], rel=0.05)


def test_an_overflowing_fp16_step_is_skipped_and_the_trial_goes_on() -> None:
    workload = LoudRegression(1e3)  # 2**16 * 1e3: overflows fp16 for the first few scales
    run = loop(workload, "fp16")
    before = [p.detach().clone() for p in run.model.parameters()]
    run.train_step()
    assert run.skipped_steps == 1 and run.scaler.get_scale() == 2.0**15
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters(), strict=True))
    for state in run.optimizer.state.values():  # the fused kernel skipped: nothing counted
        assert float(state["step"]) == 0 and not state["exp_avg"].any()
    result = run_trial(workload, OptimConfig(lr=1e-3), TrainSettings(30, 10, 0, precision="fp16"))
    assert result.state == "complete", result.reason
    assert result.diagnostics is not None and result.diagnostics["skipped_steps"] >= 1


def test_fp16_gradients_that_overflow_at_every_scale_diverge() -> None:
    result = run_trial(
        LoudRegression(1e30), OptimConfig(), TrainSettings(60, 10, 0, precision="fp16")
    )
    assert result.state == "diverged"
    assert result.reason is not None and "fp16: non-finite gradients for 30 steps" in result.reason


def test_member_scales_follow_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each member's scale evolves as torch.amp.GradScaler's would on the same overflows."""
    monkeypatch.setattr(population_scaler, "GROWTH_INTERVAL", 3)
    overflows = [[False, True], [False, False], [True, False], [False, False], [False, False],
                 [False, False], [False, True], [False, False]]  # fmt: skip
    ours = MemberGradScaler(2, torch.device("cpu"), enabled=True)
    torch_scalers = [torch.amp.GradScaler("cpu", growth_interval=3) for _ in range(2)]
    params = [nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizers = [torch.optim.SGD([p], lr=0.1) for p in params]
    for step in overflows:
        grad = torch.ones(2, 1)
        grad[torch.tensor(step)] = float("inf")
        ours.update(ours.unscale_(grad * ours.scale.unsqueeze(1)))
        for member, (scaler, p, opt) in enumerate(
            zip(torch_scalers, params, optimizers, strict=True)
        ):
            p.grad = grad[member].clone() * scaler.scale(torch.ones(())).item()
            scaler.step(opt)
            scaler.update()
        assert ours.scale.tolist() == [s.get_scale() for s in torch_scalers]
    assert ours.skipped.tolist() == [1, 2]


def test_a_skipped_member_keeps_its_state_and_step_count() -> None:
    """Member 0 skips step 2; it must equal torch.optim's Adam that never saw that step."""
    torch.manual_seed(0)
    grads = [torch.randn(2, 5) for _ in range(4)]
    params = torch.zeros(2, 5)
    hyper = MemberHyperparameters.from_configs([OptimConfig(lr=1e-2)] * 2)
    vectorised = VectorisedAdam(params, 5, hyper)
    reference = [nn.Parameter(torch.zeros(5)) for _ in range(2)]
    optimizers = [torch.optim.Adam([p], lr=1e-2) for p in reference]
    for step, grad in enumerate(grads):
        skip = torch.tensor([step == 2, False])
        g = grad.clone()
        g[0] = float("inf") if step == 2 else g[0]
        vectorised.step(g, hyper.lr, skip=skip)
        for member, (p, opt) in enumerate(zip(reference, optimizers, strict=True)):
            if not skip[member]:
                p.grad = grad[member].clone()
                opt.step()
    assert vectorised.steps.tolist() == [3.0, 4.0]
    for member, p in enumerate(reference):
        torch.testing.assert_close(params[member], p.detach(), rtol=1e-5, atol=1e-7)


def test_population_fp16_members_match_fp16_trials() -> None:
    workload = LoudRegression(1e3)
    configs = [OptimConfig(lr=1e-3), OptimConfig(optimizer="adamw", lr=3e-3, weight_decay=0.1)]
    settings = TrainSettings(30, 10, 0, precision="fp16")
    members = run_population(workload, configs, settings)  # type: ignore[arg-type]
    for member, cfg in zip(members, configs, strict=True):
        single = run_trial(workload, cfg, settings)  # type: ignore[arg-type]
        assert member.state == single.state == "complete"
        assert member.diagnostics and single.diagnostics
        # the overflow threshold is a rounding decision: at the last overflowing scale the
        # batched and the single matmul may land either side of fp16's max once
        skipped = member.diagnostics["skipped_steps"], single.diagnostics["skipped_steps"]
        assert min(skipped) >= 1 and abs(skipped[0] - skipped[1]) <= 1
        assert member.value == pytest.approx(single.value, rel=2e-2)


def test_bf16_population_runs_on_cpu() -> None:
    settings = TrainSettings(20, 10, 0, precision="bf16")
    [member] = run_population(get("regression_mlp"), [OptimConfig(lr=3e-3)], settings)
    single = run_trial(get("regression_mlp"), OptimConfig(lr=3e-3), settings)
    assert member.state == "complete" and member.value == pytest.approx(single.value, rel=5e-2)


def test_fp16_floors_the_eps_range_at_1e_6() -> None:
    assert resolve_space(JobSpec(workload="x", precision="fp16"), None).eps == (1e-6, 1e-4)
    assert resolve_space(JobSpec(workload="x"), None).eps == (1e-10, 1e-6)
    assert fp16_eps_range((1e-9, 1e-5)) == (1e-6, 1e-5)
    assert fp16_eps_range((1e-5, 1e-3)) == (1e-5, 1e-3)


REC = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "betas": [0.9, 0.99],
    "eps": 1e-6,
    "weight_decay": 0.01,
    "schedule": "cosine",
    "warmup_steps": 2,
    "total_steps": 20,
}


def test_the_snippet_trains_in_the_recommended_precision() -> None:
    assert "train_step" not in render_snippet({**REC, "precision": "fp32"})
    assert render_snippet(REC) == render_snippet({**REC, "precision": "fp32"})
    for precision, scaled in (("bf16", False), ("fp16", True)):
        source = render_snippet({**REC, "precision": precision})
        assert ("GradScaler" in source) == scaled
        assert ("scaler.unscale_(optimizer)" in source) == scaled
        namespace: dict[str, object] = {}
        exec(compile(source, "<snippet>", "exec"), namespace)
        model = nn.Linear(3, 1)
        optimizer, scheduler = namespace["build_optimizer"](model)  # type: ignore[operator]
        extra = (torch.amp.GradScaler("cpu"),) if scaled else ()
        x, y = torch.randn(8, 3), torch.randn(8, 1)
        loss = namespace["train_step"](  # type: ignore[operator]
            model, optimizer, scheduler, F.mse_loss, x, y, *extra, max_norm=1.0
        )
        assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        render_snippet({**REC, "precision": "fp8"})
