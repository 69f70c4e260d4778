"""A job and its recommendation rendered for people: the one place the CLI formats them.

``adamtune tune``, ``adamtune recommendation``, ``adamtune submit --watch`` and
``adamtune demo`` all print through :func:`render_recommendation`. It computes nothing:
the gain over the baseline is the recommendation's own ``improvement``, and every figure
resting on few trials or seeds says how many (``lr_band.n_trials``, the trial counts,
``objective_std`` over ``objective_seeds``, an objective measured on its selection seed).
Needs no torch: it runs in ``adamtune status`` as well as in ``adamtune tune``.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from tuner.client import ACTIVE_STATUSES

FORMATS = ("text", "json", "yaml", "python")
BAR_WIDTH = 30
LABEL_WIDTH = 12  # then one space: every value starts in the same column
IMPORTANCES_SHOWN = 4


def fmt(value: Any) -> str:
    """A number at 4 significant digits, ``-`` for a missing value, anything else as text."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def progress_line(job: dict[str, Any]) -> str:
    """``searching  [#######------]  9/24 trials  best 0.1234``: one line for a job."""
    progress = job.get("progress") or {}
    done = int(progress.get("trials_completed") or 0)
    total = int(progress.get("trials_total") or 0)
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total) if total else 0
    label = str(job["status"])
    phase = job.get("phase")
    if phase and label in ACTIVE_STATUSES and f"{done}/{total}" not in phase:
        label = f"{label} ({phase})"
    best = progress.get("best_objective")
    best_text = f"  best {best:.4g}" if isinstance(best, int | float) else ""
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"{label:<22} [{bar}] {done}/{total} trials{best_text}"


def render_recommendation(rec: dict[str, Any], form: str = "text") -> str:
    """The recommendation as ``text`` (for reading), ``json``, ``yaml`` or ``python`` (the
    snippet alone, ready to paste)."""
    if form == "json":
        return json.dumps(rec, indent=2)
    if form == "yaml":
        return yaml.safe_dump(rec, sort_keys=False).rstrip()
    if form == "python":
        return str(rec.get("snippet") or "").rstrip()
    if form == "text":
        return recommendation_text(rec)
    raise ValueError(f"unknown format {form!r}; use one of {', '.join(FORMATS)}")


def recommendation_text(rec: dict[str, Any]) -> str:
    """The settings, the objective against the baseline, how sure it is, then the code."""
    rows = [
        ("optimizer", fmt(rec.get("optimizer")) + ("  (amsgrad)" if rec.get("amsgrad") else "")),
        ("lr", fmt(rec.get("lr"))),
        ("betas", _betas(rec.get("betas"))),
        ("eps", fmt(rec.get("eps"))),
        ("weight_decay", f"{fmt(rec.get('weight_decay'))}  (none on biases and norm weights)"),
        ("schedule", _schedule(rec)),
        ("objective", _objective(rec)),
        ("baseline", _baseline(rec)),
        ("tuning-free", _references(rec)),
        ("lr range", _lr_range(rec.get("lr_range"))),
        ("robust lr", _lr_band(rec.get("lr_band"))),
        ("importances", _importances(rec)),
        ("effective step", _effective_step(rec.get("diagnostics"))),
    ]
    lines = [_title(rec)]
    lines += [f"  {k:<{LABEL_WIDTH}} {v}" for k, v in rows if v is not None]
    snippet = rec.get("snippet")
    if snippet:
        lines += ["", "PyTorch:", "", str(snippet).rstrip()]
    return "\n".join(lines)


def _title(rec: dict[str, Any]) -> str:
    workload = f" for {rec['workload']}" if rec.get("workload") else ""
    state = "final" if rec.get("final") else "partial: the search is still running"
    counts = rec.get("trials")
    if isinstance(counts, dict) and counts:
        total = sum(int(n) for n in counts.values())
        parts = ", ".join(f"{n} {state_name}" for state_name, n in counts.items() if n)
        state += f"; {total} trials: {parts}" if parts else f"; {total} trials"
    return f"Recommendation{workload} ({state})"


def _betas(betas: Any) -> str:
    if isinstance(betas, list | tuple):
        return ", ".join(f"{b:.6g}" if isinstance(b, float) else fmt(b) for b in betas)
    return fmt(betas)


def _schedule(rec: dict[str, Any]) -> str:
    schedule = rec.get("schedule")
    name = schedule.get("name", schedule) if isinstance(schedule, dict) else schedule
    warmup, total = rec.get("warmup_steps"), rec.get("total_steps")
    return f"{fmt(name)}, warmup {fmt(warmup)} of {fmt(total)} steps"


def _spread(mean_key: str, std_key: str, seeds_key: str, rec: dict[str, Any]) -> str:
    """``0.1234 ± 0.005 over 3 seeds`` where the recommendation carries a spread."""
    text = fmt(rec.get(mean_key))
    std, seeds = rec.get(std_key), rec.get(seeds_key)
    if isinstance(std, int | float):
        text += f" ± {std:.2g}"
    if isinstance(seeds, list) and seeds:
        text += f" over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
    return text


def _objective(rec: dict[str, Any]) -> str:
    text = _spread("expected_objective", "objective_std", "objective_seeds", rec)
    notes = []
    trial, role = rec.get("trial_number"), rec.get("trial_role")
    if trial is not None:
        notes.append(f"validation loss of trial {trial}" + (f", {role}" if role else ""))
    if rec.get("objective_selected_on_seed"):
        notes.append("on the seed it was selected on: optimistic")
    return text + (f"  ({'; '.join(notes)})" if notes else "")


def _baseline(rec: dict[str, Any]) -> str | None:
    if rec.get("baseline_objective") is None:
        return None
    text = _spread("baseline_objective", "baseline_std", "baseline_seeds", rec)
    text += "  (untuned Adam, lr 1e-3"
    gain = rec.get("improvement")
    if isinstance(gain, int | float):
        text += f"; tuned is {abs(100 * gain):.1f}% {'lower' if gain >= 0 else 'higher'}"
    return text + ")"


def _references(rec: dict[str, Any]) -> str | None:
    """``prodigy 0.31 over 1 seed, schedulefree 0.35 ...  (tuning beat ... by 4.2%)``."""
    refs = rec.get("references")
    if not isinstance(refs, dict) or not refs:
        return None
    parts = [f"{name} {_spread('objective', 'objective_std', 'objective_seeds', r)}"
             for name, r in refs.items() if isinstance(r, dict)]
    versus = rec.get("versus_references")
    verdict = versus.get("verdict") if isinstance(versus, dict) else None
    return ", ".join(parts) + (f"  ({verdict})" if verdict else "")


def _lr_range(lr_range: Any) -> str | None:
    if not isinstance(lr_range, dict):
        return None
    return (
        f"suggested {fmt(lr_range.get('suggested'))} in "
        f"[{fmt(lr_range.get('low'))}, {fmt(lr_range.get('high'))}]  (LR range test)"
    )


def _lr_band(band: Any) -> str | None:
    if not isinstance(band, dict):
        return None
    n = band.get("n_trials")
    if n == 1:
        return f"{fmt(band.get('high'))}  (one trial within 1% of the best: no band yet)"
    count = f"{n} trials" if n is not None else "the trials"
    return f"{fmt(band.get('low'))} .. {fmt(band.get('high'))}  ({count} within 1% of the best)"


def _importances(rec: dict[str, Any]) -> str | None:
    importances = rec.get("importances")
    if not isinstance(importances, dict) or not importances:
        return None
    top = list(importances.items())[:IMPORTANCES_SHOWN]
    return ", ".join(f"{name} {value:.2f}" for name, value in top)


def _effective_step(diagnostics: Any) -> str | None:
    """The median |m|/sqrt(v) per parameter group: near 0, that group no longer moves."""
    if not isinstance(diagnostics, dict):
        return None
    groups = diagnostics.get("groups") or diagnostics.get("modules")
    if not isinstance(groups, dict) or not groups:
        return None
    parts = ", ".join(
        f"{name} p50 {fmt(q.get('p50'))}" for name, q in groups.items() if isinstance(q, dict)
    )
    return f"{parts}  (|m|/sqrt(v); near 0: no longer moving)" if parts else None
