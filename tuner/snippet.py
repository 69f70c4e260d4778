"""Render a recommendation as runnable PyTorch: the optimizer, its parameter groups and the
``LambdaLR`` schedule with the same closed forms as :mod:`tuner.schedules`.

No torch import here: the API renders snippets without paying for it.
"""

from __future__ import annotations

from typing import Any

_TEMPLATE = '''\
# adamtune recommendation: {summary}
import math

import torch

PEAK_LR = {lr!r}
WARMUP_STEPS = {warmup_steps!r}
TOTAL_STEPS = {total_steps!r}  # scheduler.step() calls over the whole run
FLOOR = {floor!r}  # lowest lr of the decay, as a fraction of PEAK_LR


def lr_lambda(step: int) -> float:
    """Multiplier of PEAK_LR for the optimizer step about to be taken (0-based)."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
{decay_body}

def build_optimizer(model: torch.nn.Module):
    """{cls} with no weight decay on 1-D parameters (biases, norm weights), and its scheduler.

    Call scheduler.step() after every optimizer.step().
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {{"params": decay, "weight_decay": {weight_decay!r}}},
        {{"params": no_decay, "weight_decay": 0.0}},
    ]
    optimizer = torch.optim.{cls}(
        [g for g in groups if g["params"]],
        lr=PEAK_LR,
        betas=({beta1!r}, {beta2!r}),
        eps={eps!r},
        amsgrad={amsgrad!r},
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    return optimizer, scheduler
{precision_body}'''

# The precision the recommendation was tuned in; fp32 needs no extra lines.
_AUTOCAST_STEP = '''

PRECISION = "{precision}"  # tuned with {what}


def train_step(model, optimizer, scheduler, loss_fn, inputs, targets, {scaler_arg}max_norm=None):
    """One training step in the tuned precision.{scaler_doc}"""
    with torch.autocast(inputs.device.type, dtype=torch.{dtype}):
        loss = loss_fn(model(inputs), targets)
    optimizer.zero_grad(set_to_none=True)
{backward}    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
{step}    scheduler.step()
    return loss.detach()
'''

_PLAIN_STEP = """\
    loss.backward()
"""
_PLAIN_OPTIMIZER = """\
    optimizer.step()
"""
_SCALED_STEP = """\
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # clip (and let Adam see) the true gradients
"""
_SCALED_OPTIMIZER = """\
    scaler.step(optimizer)  # skipped when a gradient overflowed; the scale then halves
    scaler.update()
"""
_SCALER_DOC = """

    ``scaler = torch.amp.GradScaler(inputs.device.type)``, made once before training."""

_PROGRESS = """\
    span = max(1, TOTAL_STEPS - WARMUP_STEPS - 1)
    progress = min(1.0, max(0.0, (step - WARMUP_STEPS) / span))
"""

_DECAY = {
    "constant": "    return 1.0\n",
    "linear": _PROGRESS + "    return FLOOR + (1.0 - FLOOR) * (1.0 - progress)\n",
    "cosine": _PROGRESS
    + "    return FLOOR + (1.0 - FLOOR) * 0.5 * (1.0 + math.cos(math.pi * progress))\n",
}

_CLASSES = {"adam": "Adam", "adamw": "AdamW"}


def _precision_body(precision: str) -> str:
    """``train_step`` with autocast (and a GradScaler for fp16); nothing for fp32."""
    if precision == "fp32":
        return ""
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16 or fp16")
    fp16 = precision == "fp16"
    return _AUTOCAST_STEP.format(
        precision=precision,
        what="fp16 autocast and a GradScaler" if fp16 else "bf16 autocast",
        dtype="float16" if fp16 else "bfloat16",
        scaler_arg="scaler, " if fp16 else "",
        scaler_doc=_SCALER_DOC if fp16 else "",
        backward=_SCALED_STEP if fp16 else _PLAIN_STEP,
        step=_SCALED_OPTIMIZER if fp16 else _PLAIN_OPTIMIZER,
    )


def render_snippet(rec: dict[str, Any]) -> str:
    """Python source defining ``lr_lambda(step)`` and ``build_optimizer(model)``, and
    ``train_step(...)`` with the autocast (and GradScaler) lines where the precision is not fp32."""
    schedule = str(rec["schedule"])
    if schedule not in _DECAY:
        raise ValueError(f"unknown schedule {schedule!r}; use one of {', '.join(_DECAY)}")
    optimizer = str(rec["optimizer"])
    if optimizer not in _CLASSES:
        raise ValueError(f"unknown optimizer {optimizer!r}; use 'adam' or 'adamw'")
    beta1, beta2 = (float(b) for b in rec["betas"])
    summary = (
        f"{optimizer}, lr {float(rec['lr']):.3g}, {schedule} decay "
        f"after {int(rec['warmup_steps'])} "
        f"warmup steps of {int(rec['total_steps'])}"
    )
    return _TEMPLATE.format(
        summary=summary,
        lr=float(rec["lr"]),
        warmup_steps=int(rec["warmup_steps"]),
        total_steps=int(rec["total_steps"]),
        floor=float(rec.get("lr_floor") or 0.0),
        decay_body=_DECAY[schedule],
        cls=_CLASSES[optimizer],
        weight_decay=float(rec["weight_decay"]),
        beta1=beta1,
        beta2=beta2,
        eps=float(rec["eps"]),
        amsgrad=bool(rec.get("amsgrad", False)),
        precision_body=_precision_body(str(rec.get("precision") or "fp32")),
    )
