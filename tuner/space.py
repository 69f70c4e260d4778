"""The search space: DESIGN.md's defaults, narrowed by a preset, then by the job's ``search``.

Resolution is a pure function of the job and the sweep's lr range, so every worker that
resolves the same job builds identical Optuna distributions. Each layer replaces the ranges it
names: a preset sets common-practice ranges, and whatever the job's ``search`` states wins.

Parameterisation (what Optuna samples, and why):
- ``lr``: log-uniform, by default ``LR_DECADES`` decades either side of the LR range test's
  suggestion (clipped to ``LR_LIMITS``, and always holding ``COMMON_LR`` and the sweep's own
  ``[low, high]``):
  the sweep is a prior (its suggestion and a ladder around it are the first trials), never a
  fence. A range test is 10-40x off on some workloads; the search must still reach the optimum.
- ``one_minus_beta2``: log-uniform; beta2 = 1 - value (0.999 and 0.99 are a decade apart).
- ``eps``: log-uniform.
- ``wd_times_lr``: log-uniform; the weight decay is ``wd_times_lr / lr``. With AdamW the
  fraction of each weight removed per step is ``lr * weight_decay``, so sampling the product
  keeps the decay's strength independent of the lr. Its range is the weight-decay range
  (``search.weight_decay``) multiplied by the reference lrs (the sweep's suggestion and the
  ladder's anchor, 2e-3): the sweep does not fence the decay either.
- ``warmup_fraction``: uniform; warmup steps = round(fraction * steps_per_trial).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from tuner.spec import FP16_EPS_FLOOR, JobSpec, SearchSpace

Interval = tuple[float, float]

DEFAULT_LR: Interval = (1e-5, 1e-1)  # used when there is no sweep and the job names no lr range
LR_DECADES = 2.0  # the lr range spans this many decades below and above the sweep's suggestion
LR_LIMITS: Interval = (1e-6, 3.0)  # no Adam-family run trains outside these, whatever the sweep
COMMON_LR: Interval = (1e-4, 1e-1)  # always searched: where Adam's optimum usually is


@dataclass(frozen=True)
class ResolvedSpace:
    """The ranges one job searches. ``lr_ref`` scales the weight-decay range (see module doc)."""

    optimizers: tuple[str, ...] = ("adam", "adamw")
    lr: Interval = DEFAULT_LR
    beta1: Interval = (0.8, 0.99)
    one_minus_beta2: Interval = (1e-4, 1e-1)
    eps: Interval = (1e-10, 1e-6)
    weight_decay: Interval = (1e-5, 1e-1)
    warmup_fraction: Interval = (0.0, 0.2)
    schedules: tuple[str, ...] = ("constant", "linear", "cosine")
    amsgrad: bool = False
    lr_ref: float = 1e-3

    @property
    def wd_times_lr(self) -> Interval:
        """The weight-decay range times the reference lrs: the sweep's suggestion and the
        ladder's anchor (inside the lr range). Scaled by the sweep alone, a sweep 1000x low
        left a weight decay of at most 1e-4 at the lr where Adam's optimum was: a fence."""
        anchor = clamp(LADDER_ANCHOR_LR * SCHEDULE_SUGGESTION_PEAK, self.lr)
        low, high = min(self.lr_ref, anchor), max(self.lr_ref, anchor)
        return (self.weight_decay[0] * low, self.weight_decay[1] * high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimizers": list(self.optimizers),
            "lr": list(self.lr),
            "beta1": list(self.beta1),
            "one_minus_beta2": list(self.one_minus_beta2),
            "eps": list(self.eps),
            "weight_decay": list(self.weight_decay),
            "warmup_fraction": list(self.warmup_fraction),
            "schedules": list(self.schedules),
            "amsgrad": self.amsgrad,
            "lr_ref": self.lr_ref,
        }


# Common practice, as search-space overrides (same field names as the job's ``search``).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # CNNs/ViTs: beta2 between 0.98 and 0.999, decay to the end of training.
    "vision": {
        "beta1": (0.85, 0.95),
        "one_minus_beta2": (1e-3, 2e-2),
        "warmup_fraction": (0.0, 0.1),
        "schedules": ("cosine", "linear"),
    },
    # Transformers: AdamW, beta2 near 0.98 (0.95..0.99), always some warmup.
    "transformer": {
        "optimizers": ("adamw",),
        "beta1": (0.85, 0.95),
        "one_minus_beta2": (1e-2, 5e-2),
        "warmup_fraction": (0.02, 0.2),
        "weight_decay": (1e-3, 3e-1),
        "schedules": ("cosine", "linear"),
    },
    # Fine-tuning a pretrained model: small lr, AdamW, short warmup, linear decay.
    "finetune": {
        "optimizers": ("adamw",),
        "lr": (1e-5, 1e-4),
        "warmup_fraction": (0.02, 0.1),
        "schedules": ("linear", "cosine"),
    },
    # GANs: low beta1 (DCGAN's 0.5, TTUR's 0.0), constant lr.
    "gan": {
        "beta1": (0.0, 0.6),
        "one_minus_beta2": (1e-3, 1e-1),
        "warmup_fraction": (0.0, 0.05),
        "schedules": ("constant", "linear"),
    },
}


def _from_search(search: SearchSpace) -> dict[str, Any]:
    """The fields a job's ``search`` states, as ResolvedSpace overrides."""
    out: dict[str, Any] = {}
    for name in ("lr", "beta1", "one_minus_beta2", "eps", "weight_decay", "warmup_fraction"):
        value = getattr(search, name)
        if value is not None:
            out[name] = (float(value.low), float(value.high))
    if search.optimizers is not None:
        out["optimizers"] = tuple(dict.fromkeys(search.optimizers))
    if search.schedules is not None:
        out["schedules"] = tuple(dict.fromkeys(search.schedules))
    if search.amsgrad is not None:
        out["amsgrad"] = bool(search.amsgrad)
    return out


def _geomean(interval: Interval) -> float:
    return math.sqrt(interval[0] * interval[1])


def prior_lr_interval(lr_range: dict[str, float]) -> Interval:
    """The lr range searched around a sweep: ``LR_DECADES`` either side of its suggestion, and
    at least the sweep's own ``[low, high]`` and ``COMMON_LR`` (a range test can be 1000x off),
    clipped to ``LR_LIMITS``."""
    suggested = float(lr_range["suggested"])
    low = min(suggested * 10**-LR_DECADES, float(lr_range["low"]), COMMON_LR[0])
    high = max(suggested * 10**LR_DECADES, float(lr_range["high"]), COMMON_LR[1])
    return (max(low, LR_LIMITS[0]), min(high, LR_LIMITS[1]))


def resolve_space(spec: JobSpec, lr_range: dict[str, float] | None) -> ResolvedSpace:
    """Defaults, then the lr range around the sweep, then the preset, then the job's ``search``."""
    space = ResolvedSpace()
    if lr_range is not None:
        space = replace(space, lr=prior_lr_interval(lr_range))
    space = replace(space, **PRESETS[spec.preset])
    space = replace(space, **_from_search(spec.search))
    if spec.precision == "fp16":
        space = replace(space, eps=fp16_eps_range(space.eps))
    suggested = float(lr_range["suggested"]) if lr_range is not None else None
    inside = suggested is not None and space.lr[0] <= suggested <= space.lr[1]
    return replace(space, lr_ref=suggested if inside else _geomean(space.lr))  # type: ignore[arg-type]


FP16_EPS_HIGH = 1e-4  # the range under fp16 when the floor leaves nothing of the asked one


def fp16_eps_range(eps: Interval) -> Interval:
    """``eps`` floored at ``FP16_EPS_FLOOR``: under fp16 a tiny v_hat makes a smaller eps
    blow the step up; a range wholly below the floor becomes ``[floor, FP16_EPS_HIGH]``."""
    low, high = max(eps[0], FP16_EPS_FLOOR), max(eps[1], FP16_EPS_FLOOR)
    return (low, high) if high > low else (FP16_EPS_FLOOR, FP16_EPS_HIGH)


def clamp(value: float, interval: Interval) -> float:
    return min(max(value, interval[0]), interval[1])


# The third seeded trial: the sweep's lr as the *mean* lr of a short warmup and a cosine decay.
# A range test measures the best constant lr; a schedule that decays to zero averages about
# half its peak, so its peak can sit about twice as high for the same mean step size.
SCHEDULE_SUGGESTION_WARMUP = 0.05
SCHEDULE_SUGGESTION_PEAK = 2.0


def sweep_suggestion_params(space: ResolvedSpace, lr: float) -> dict[str, Any]:
    """The baseline's settings with the sweep's lr, moved inside the space: the second trial."""
    return {
        "optimizer": "adam" if "adam" in space.optimizers else space.optimizers[0],
        "lr": clamp(lr, space.lr),
        "beta1": clamp(0.9, space.beta1),
        "one_minus_beta2": clamp(1e-3, space.one_minus_beta2),
        "eps": clamp(1e-8, space.eps),
        "wd_times_lr": space.wd_times_lr[0],
        "warmup_fraction": space.warmup_fraction[0],
        "schedule": "constant" if "constant" in space.schedules else space.schedules[0],
    }


def schedule_suggestion_params(space: ResolvedSpace, lr: float) -> dict[str, Any] | None:
    """The sweep's suggestion with a short warmup and a decay whose mean lr is the sweep's lr:
    the third trial. None where the space allows no decaying schedule."""
    decaying = [s for s in ("cosine", "linear") if s in space.schedules]
    if not decaying:
        return None
    return {
        **sweep_suggestion_params(space, lr * SCHEDULE_SUGGESTION_PEAK),
        "warmup_fraction": clamp(SCHEDULE_SUGGESTION_WARMUP, space.warmup_fraction),
        "schedule": decaying[0],
    }


# The lr ladder, two decaying-schedule trials: one at the untuned default's lr, a hedge that
# owes nothing to the sweep (AdamW, weight decay 0.1: the common recipe), and one a decade below
# the sweep's lr (range tests err high more often than low; 1.5 decades below where a decade
# below is the default's lr already). A sweep 10-1000x off then still leaves a good scheduled
# trial, and tells TPE which way the optimum lies. A suggestion below COMMON_LR (where Adam's
# optimum usually is) is already a probe of the low side: its rung goes a decade above the
# anchor instead, so the five first trials span the lr range however wrong the sweep.
LADDER_ANCHOR_LR = 1e-3
LADDER_ANCHOR_WEIGHT_DECAY = 0.1
LADDER_BELOW, LADDER_FURTHER_BELOW = 0.1, 10**-1.5
LADDER_ABOVE_ANCHOR = 10.0


def ladder_params(space: ResolvedSpace, lr: float) -> list[dict[str, Any]]:
    """The ladder's trials (each moved inside the space); like
    :func:`schedule_suggestion_params`, empty where no decaying schedule is searched."""
    anchor = schedule_suggestion_params(space, LADDER_ANCHOR_LR)
    if anchor is None:
        return []
    if "adamw" in space.optimizers:
        anchor["optimizer"] = "adamw"
    wd_times_lr = LADDER_ANCHOR_WEIGHT_DECAY * anchor["lr"]
    anchor["wd_times_lr"] = clamp(wd_times_lr, space.wd_times_lr)
    if lr < COMMON_LR[0]:
        rung = LADDER_ANCHOR_LR * LADDER_ABOVE_ANCHOR
    else:
        near = abs(math.log10(lr * LADDER_BELOW / LADDER_ANCHOR_LR)) < 0.25
        rung = lr * (LADDER_FURTHER_BELOW if near else LADDER_BELOW)
    other = schedule_suggestion_params(space, rung)
    return [anchor] + ([other] if other is not None else [])
