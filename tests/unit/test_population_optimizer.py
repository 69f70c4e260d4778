"""The vectorised Adam/AdamW against torch.optim: every member must match its own run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tuner.optim import OptimConfig, build_optimizer, build_scheduler
from tuner.population import (
    MemberHyperparameters,
    StackedModel,
    VectorisedAdam,
    VectorisedAdamW,
    clip_grad_norm_rows_,
)
from tuner.workloads import get
from tuner.workloads.base import Workload

SEED = 3
MIXED_CONFIGS = [
    OptimConfig(optimizer="adam", lr=3e-3),
    OptimConfig(
        optimizer="adamw",
        lr=2e-3,
        beta1=0.8,
        beta2=0.99,
        eps=1e-6,
        weight_decay=0.1,
        amsgrad=True,
        warmup_steps=5,
        schedule="linear",
        floor=0.1,
    ),
    OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.01, warmup_steps=10, schedule="cosine"),
    OptimConfig(optimizer="adamw", lr=5e-4, beta2=0.95, weight_decay=0.05, schedule="cosine"),
    OptimConfig(optimizer="adam", lr=4e-3, beta1=0.95, eps=1e-10, amsgrad=True, warmup_steps=3),
]


CUDA = pytest.param(
    "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
)


def train_stacked(
    workload: Workload,
    configs: list[OptimConfig],
    steps: int,
    grad_clip: float | None = None,
    device: str = "cpu",
) -> StackedModel:
    """The population maths alone: stacked forward/backward, clipping, vectorised update."""
    model = workload.make_model(SEED).to(device)
    stacked = StackedModel(model, len(configs), workload.loss)
    optimizer = VectorisedAdam(
        stacked.flat, stacked.n_decay, MemberHyperparameters.from_configs(configs)
    )
    batches = workload.train_batches(SEED)
    for step in range(steps):
        inputs, targets = next(batches)
        _, grad = stacked.loss_and_grad(inputs.to(device), targets.to(device))
        if grad_clip is not None:
            clip_grad_norm_rows_(grad, grad_clip)
        optimizer.step(grad, optimizer.hyper.lr_at(step, steps))
    return stacked


def train_reference(
    workload: Workload,
    cfg: OptimConfig,
    steps: int,
    grad_clip: float | None = None,
    device: str = "cpu",
) -> nn.Module:
    """One trial with torch.optim, built the way every single trial is built."""
    model = workload.make_model(SEED).to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, steps)
    batches = workload.train_batches(SEED)
    for _ in range(steps):
        inputs, targets = next(batches)
        optimizer.zero_grad()
        workload.loss(model(inputs.to(device)), targets.to(device)).backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
    return model


def assert_member_matches(
    stacked: StackedModel,
    row: int,
    reference: nn.Module,
    skip: dict[str, slice] | None = None,
) -> None:
    """Every parameter tensor within 1e-5 relative (norm of the difference over the norm).

    Elementwise comparison is meaningless for Adam: where a gradient is pure round-off
    noise (exactly zero in exact arithmetic) Adam normalises it into an lr-sized step whose
    sign depends on the summation order of the matmul. ``skip`` names such slices.
    """
    for name, expected in reference.named_parameters():
        got, want = stacked.params[name][row].cpu(), expected.detach().cpu()
        if skip and name in skip:
            keep = torch.ones(want.shape[0], dtype=torch.bool)
            keep[skip[name]] = False
            got, want = got[keep], want[keep]
        rel = ((got - want).norm() / want.norm().clamp_min(1e-12)).item()
        assert rel <= 1e-5, f"member {row} {name}: relative error {rel:.2e}"


def key_bias_slices(model: nn.Module) -> dict[str, slice]:
    """The key part of every attention ``qkv.bias``: softmax is invariant to it, so its true
    gradient is exactly zero and both implementations step on round-off noise there."""
    return {
        name: slice(p.shape[0] // 3, 2 * p.shape[0] // 3)
        for name, p in model.named_parameters()
        if name.endswith("qkv.bias")
    }


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_mixed_adam_and_adamw_members_each_match_torch_optim(device: str) -> None:
    workload = get("digits_mlp")
    steps = 20
    stacked = train_stacked(workload, MIXED_CONFIGS, steps, device=device)
    for row, cfg in enumerate(MIXED_CONFIGS):
        reference = train_reference(workload, cfg, steps, device=device)
        assert_member_matches(stacked, row, reference)


def test_gradient_clipping_is_per_member_like_clip_grad_norm() -> None:
    workload = get("regression_mlp")
    configs = [MIXED_CONFIGS[0], MIXED_CONFIGS[1], OptimConfig(lr=2e-2)]
    steps = 15
    stacked = train_stacked(workload, configs, steps, grad_clip=0.5)
    for row, cfg in enumerate(configs):
        assert_member_matches(stacked, row, train_reference(workload, cfg, steps, grad_clip=0.5))


def test_tiny_transformer_trains_under_vmap_and_matches() -> None:
    workload = get("tiny_transformer")
    configs = [MIXED_CONFIGS[0], MIXED_CONFIGS[1], MIXED_CONFIGS[4]]
    steps = 8
    stacked = train_stacked(workload, configs, steps)
    skip = key_bias_slices(workload.make_model(SEED))
    assert len(skip) == 2
    for row, cfg in enumerate(configs):
        assert_member_matches(stacked, row, train_reference(workload, cfg, steps), skip)


def test_layout_puts_decayed_matrices_first_and_1d_params_after() -> None:
    stacked = StackedModel(get("tiny_transformer").make_model(0), 2, get("tiny_transformer").loss)
    for slot in stacked.slots:
        assert (len(slot.shape) >= 2) == (slot.offset < stacked.n_decay), slot.name
    assert stacked.flat.shape == (2, sum(s.numel for s in stacked.slots))
    assert "blocks.0.mask" in stacked.buffers  # buffers are stacked and passed through


def test_schedule_lr_equals_lambda_lr_at_every_step() -> None:
    steps = 20
    hyper = MemberHyperparameters.from_configs(MIXED_CONFIGS)
    model = nn.Linear(2, 2)
    for row, cfg in enumerate(MIXED_CONFIGS):
        optimizer = build_optimizer(model, cfg)
        scheduler = build_scheduler(optimizer, cfg, steps)
        for step in range(steps):
            expected = optimizer.param_groups[0]["lr"]
            assert hyper.lr_at(step, steps)[row].item() == pytest.approx(expected, rel=1e-12)
            optimizer.step()
            scheduler.step()


def test_vectorised_adamw_decouples_decay_for_every_member() -> None:
    workload = get("digits_mlp")
    configs = [OptimConfig(optimizer="adam", lr=1e-3, weight_decay=0.1)]
    stacked = StackedModel(workload.make_model(SEED), 1, workload.loss)
    hyper = MemberHyperparameters.from_configs(configs)
    optimizer = VectorisedAdamW(stacked.flat, stacked.n_decay, hyper)
    batches = workload.train_batches(SEED)
    for step in range(5):
        _, grad = stacked.loss_and_grad(*next(batches))
        optimizer.step(grad, hyper.lr_at(step, 5))
    as_adamw = OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=0.1)
    assert_member_matches(stacked, 0, train_reference(workload, as_adamw, 5))
    member = workload.make_model(0)
    member.load_state_dict(stacked.member_state_dict(0))  # a member leaves as a plain model
    assert torch.equal(member[0].weight, stacked.params["0.weight"][0])


def test_unknown_optimizer_or_schedule_names_the_member_and_the_choices() -> None:
    with pytest.raises(
        ValueError, match="member 1: unknown optimizer 'sgd'; use 'adam' or 'adamw'"
    ):
        MemberHyperparameters.from_configs([OptimConfig(), OptimConfig(optimizer="sgd")])
    with pytest.raises(ValueError, match="member 0: unknown schedule 'step'"):
        MemberHyperparameters.from_configs([OptimConfig(schedule="step")])
