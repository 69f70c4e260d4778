"""The job: pydantic models shared by the API, the workers and the CLI.

A job file (YAML or JSON) has exactly the shape of the ``POST /v1/jobs`` body, which is
:class:`JobSpec`. Every range is checked here so that a bad job is refused with a message
that names the field and says what is allowed.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

OptimizerName = Literal["adam", "adamw"]
ScheduleName = Literal["constant", "linear", "cosine"]
PresetName = Literal["default", "vision", "transformer", "finetune", "gan"]
ReferenceName = Literal["schedulefree", "prodigy"]
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")
PRESETS: tuple[str, ...] = ("default", "vision", "transformer", "finetune", "gan")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")

# Hard ceilings that no server setting can lift; servers may set lower ones (Settings).
MAX_TRIALS = 10_000
MAX_STEPS_PER_TRIAL = 1_000_000
MAX_POPULATION = 1024
WORKLOAD_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
PROGRAM_PREFIX = "program:"  # a program job's `workload` column: program:NAME


def program_target(name: str) -> str:
    """The jobs table's ``workload`` value of a job naming program ``name``."""
    return f"{PROGRAM_PREFIX}{name}"


def program_of(target: str) -> str | None:
    """The program a jobs-table ``workload`` value names, or None for a workload job."""
    return target.removeprefix(PROGRAM_PREFIX) if target.startswith(PROGRAM_PREFIX) else None


class _Strict(BaseModel):
    # No NaN or infinity anywhere (JSON parsers accept `Infinity`, and `1e400` overflows to
    # it): every float of a job is a finite number or refused.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``trials: true`` would pass as 1: a boolean is refused where a number is expected."""
        if isinstance(value, bool) and info.field_name is not None:
            annotation = str(cls.model_fields[info.field_name].annotation)
            if ("int" in annotation or "float" in annotation) and "bool" not in annotation:
                raise ValueError(f"{str(value).lower()} is a boolean, not a number: give a number")
        return value


class Range(_Strict):
    """A closed interval ``[low, high]`` with ``low < high``."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not self.low < self.high:
            raise ValueError(
                f"low ({self.low}) must be smaller than high ({self.high}); "
                "swap them or widen the range"
            )
        return self


class PositiveRange(Range):
    """A range of a quantity that must be > 0 (lr, eps, 1 - beta2)."""

    @model_validator(mode="after")
    def _positive(self) -> PositiveRange:
        if self.low <= 0:
            raise ValueError(
                f"low must be > 0 (got {self.low}); this range is searched on a log scale"
            )
        return self


class UnitRange(Range):
    """A range inside [0, 1) (beta1, 1 - beta2)."""

    @model_validator(mode="after")
    def _unit(self) -> UnitRange:
        if self.low < 0 or self.high >= 1:
            raise ValueError(f"range must lie in [0, 1) (got [{self.low}, {self.high}])")
        return self


class LogUnitRange(PositiveRange):
    """A log-searched range inside (0, 1): 1 - beta2."""

    @model_validator(mode="after")
    def _below_one(self) -> LogUnitRange:
        if self.high >= 1:
            raise ValueError(f"high must be < 1 (got {self.high}): beta2 = 1 - value must stay > 0")
        return self


class NonNegativeRange(Range):
    @model_validator(mode="after")
    def _non_negative(self) -> NonNegativeRange:
        if self.low < 0:
            raise ValueError(f"low must be >= 0 (got {self.low})")
        return self


class SearchSpace(_Strict):
    """Narrowing of the search space. Every field left out keeps the preset's value.

    ``lr`` left out means: centred on the LR range test's suggestion.
    ``weight_decay`` is searched log-uniformly (coupled to lr), so its ``low`` must be > 0.
    """

    optimizers: list[OptimizerName] | None = Field(default=None, min_length=1)
    lr: PositiveRange | None = None
    beta1: UnitRange | None = None
    one_minus_beta2: LogUnitRange | None = None
    eps: PositiveRange | None = None
    weight_decay: PositiveRange | None = None
    warmup_fraction: NonNegativeRange | None = None
    schedules: list[ScheduleName] | None = Field(default=None, min_length=1)
    amsgrad: bool | None = None

    @model_validator(mode="after")
    def _warmup_below_one(self) -> SearchSpace:
        if self.warmup_fraction is not None and self.warmup_fraction.high > 0.9:
            raise ValueError(
                "warmup_fraction.high must be <= 0.9: warmup must leave steps to train"
            )
        return self


class SweepSpec(_Strict):
    """The LR range test: an exponential ramp from ``lr_min`` to ``lr_max``."""

    lr_min: float = Field(default=1e-7, gt=0)
    lr_max: float = Field(default=10.0, gt=0)
    steps: int = Field(default=100, ge=10, le=10_000)
    smoothing: float = Field(default=0.98, ge=0, lt=1, description="EMA factor of the loss")
    divergence_factor: float = Field(default=4.0, gt=1)
    enabled: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> SweepSpec:
        if not self.lr_min < self.lr_max:
            raise ValueError(f"lr_min ({self.lr_min}) must be smaller than lr_max ({self.lr_max})")
        return self


class Budget(_Strict):
    trials: int = Field(default=24, ge=2, le=MAX_TRIALS, description="finished trials in all")
    steps_per_trial: int = Field(default=300, ge=10, le=MAX_STEPS_PER_TRIAL)
    eval_every: int = Field(default=50, ge=1, description="validate every this many steps")
    confirm_seeds: int | None = Field(
        default=None, ge=0, le=10,
        description="extra seeds the best configurations are re-run on (part of the budget); "
        "default: 2 from 15 trials up, else 0",
    )
    confirm_top: int = Field(
        default=2, ge=1, le=10, description="configurations re-run on the confirmation seeds"
    )

    @model_validator(mode="after")
    def _confirmation_fits(self) -> Budget:
        cost = (self.confirm_seeds or 0) * (self.confirm_top + 1)  # + the baseline's re-runs
        if cost and self.trials - cost < 3:
            raise ValueError(
                f"budget.confirm_seeds x (budget.confirm_top + 1) = {cost} confirmation trials "
                f"leave fewer than 3 of budget.trials ({self.trials}) for the search: raise "
                "budget.trials, or lower budget.confirm_seeds or budget.confirm_top"
            )
        return self


def _what_names(field: str) -> str:
    """What a job's ``workload`` or ``program`` must name, for the error that refuses one."""
    if field == "program":
        return ("a job names a program that a worker was configured to run (adamtune worker "
                "--program NAME=...), never a command; names are letters, digits, '_', '.', "
                "'-' (GET /v1/workers lists them)")
    from tuner.workloads import names

    return ("a job names an installed workload (letters, digits, '_', '.', '-'), never an "
            f"import path or a file; known workloads: {', '.join(names())}")


class JobSpec(_Strict):
    """The body of ``POST /v1/jobs`` and the content of a job file.

    A job trains exactly one of: ``workload`` (an installed Workload that adamtune's own loop
    trains) or ``program`` (a user's training script that workers were configured to run,
    by name only: the command never travels in a job, see docs/programs.md).
    """

    name: str | None = Field(default=None, max_length=200)
    workload: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=WORKLOAD_NAME.pattern,
        description="an installed workload (GET /v1/workloads); give this or program",
    )
    program: str | None = Field(
        default=None, min_length=1, max_length=100, pattern=WORKLOAD_NAME.pattern,
        description="a program (the user's training script) that live workers were configured "
        "to run (GET /v1/workers); give this or workload",
    )
    preset: PresetName = "default"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    budget: Budget = Field(default_factory=Budget)
    search: SearchSpace = Field(default_factory=SearchSpace)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    population: Annotated[int, Field(ge=1, le=MAX_POPULATION)] | Literal["auto"] = Field(
        default=1,
        description="trials trained at once, or 'auto': the worker measures its device and "
        "picks the size (tuner.population.sizing)",
    )
    precision: PrecisionName = Field(
        default="auto",
        description="training precision: 'auto' (bf16 autocast on CUDA, fp32 on CPU), 'fp32', "
        "'bf16' (autocast) or 'fp16' (autocast with a gradient scaler; eps floored at 1e-6)",
    )
    grad_clip: float | None = Field(default=None, gt=0)
    lr_floor: float = Field(
        default=0.0, ge=0, lt=1, description="decay floor, a fraction of peak lr"
    )
    references: list[ReferenceName] | None = Field(
        default=None,
        description="tuning-free optimizers run beside the baseline; default: both from "
        "15 trials up, [] to turn them off",
    )

    @field_validator("workload", "program", mode="before")
    @classmethod
    def _named(cls, value: Any, info: ValidationInfo) -> Any:
        """A workload or a program is named, never an import path, a file or a command: say
        so before the bare pattern error would."""
        if isinstance(value, str) and value and not WORKLOAD_NAME.match(value):
            field = info.field_name or "workload"
            raise ValueError(f"{value[:100]!r} is not a {field} name: {_what_names(field)}")
        return value

    @model_validator(mode="after")
    def _workload_or_program(self) -> JobSpec:
        if (self.workload is None) == (self.program is None):
            given = "both" if self.workload is not None else "neither"
            raise ValueError(
                f"a job names exactly one of workload (an installed workload, GET "
                f"/v1/workloads) and program (a worker's training script, GET /v1/workers); "
                f"got {given}"
            )
        if self.program is not None and self.references:
            raise ValueError(
                "references are not run for a program job (Schedule-Free needs train/eval "
                "switching that a user's own loop does not do): remove references"
            )
        return self

    @property
    def target(self) -> str:
        """What the job trains, as the jobs table's ``workload`` column holds it: the
        workload's name, or ``program:NAME`` (no workload name has a colon)."""
        if self.program is not None:
            return program_target(self.program)
        assert self.workload is not None  # _workload_or_program
        return self.workload

    @field_validator("population", mode="wrap")
    @classmethod
    def _population(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One message for both forms, instead of one error per branch of the union."""
        if isinstance(value, bool):
            raise ValueError(f"{str(value).lower()} is a boolean, not a number: give a number")
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                f"must be a whole number from 1 to {MAX_POPULATION} (trials trained at once) "
                f"or 'auto' (the worker sizes it to its device); got {value!r}"
            ) from None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str | None) -> str | None:
        if name is not None and any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
            raise ValueError("name must not contain control characters (newline, tab, NUL...)")
        return name

    @model_validator(mode="after")
    def _eval_fits(self) -> JobSpec:
        if self.budget.eval_every > self.budget.steps_per_trial:
            raise ValueError(
                f"budget.eval_every ({self.budget.eval_every}) must be <= budget.steps_per_trial "
                f"({self.budget.steps_per_trial})"
            )
        return self


FP16_EPS_FLOOR = 1e-6  # under fp16 a tiny v_hat makes a smaller eps blow the step up


def resolve_precision(precision: str, device: str) -> str:
    """The precision a trial trains in: ``auto`` is bf16 autocast on CUDA, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if str(device).startswith("cuda") else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    return precision


class JobFileError(ValueError):
    """A job file that cannot be read or does not validate; the message says what to fix."""


UNKNOWN_FIELD = "unknown field; remove it or fix its spelling (docs/api.md lists a job's fields)"


def error_message(err: Any) -> str:
    """One pydantic error as a user reads it, worded the same by the CLI and the API."""
    if err.get("type") == "extra_forbidden":
        return UNKNOWN_FIELD
    if err.get("type") == "missing":
        return "field required"
    return str(err.get("msg", "")).removeprefix("Value error, ")


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        lines.append(f"{loc}: {error_message(err)}")
    return "; ".join(lines)


def parse_job(data: Any) -> JobSpec:
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(format_validation_error(exc)) from None


def load_job_file(path: str | Path) -> JobSpec:
    """Read a YAML or JSON job file and validate it."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise JobFileError(f"cannot read job file {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise JobFileError(f"{p} is not valid YAML/JSON: {exc}") from None
    if not isinstance(data, dict):
        raise JobFileError(f"{p} must hold a mapping with at least 'workload' or 'program'")
    try:
        return parse_job(data)
    except JobFileError as exc:
        raise JobFileError(f"{p}: {exc}") from None
