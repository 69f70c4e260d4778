"""The one renderer of recommendations for people (``adamtune.cli.render``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from adamtune.cli.render import progress_line, render_recommendation

SNIPPET = "import torch\noptimizer = torch.optim.AdamW(model.parameters(), lr=0.003)\n"


def recommendation(**changes: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "optimizer": "adamw",
        "lr": 0.0031234,
        "betas": [0.9, 0.995],
        "eps": 1e-8,
        "weight_decay": 5e-6,
        "amsgrad": False,
        "schedule": "cosine",
        "warmup_steps": 10,
        "total_steps": 200,
        "expected_objective": 0.1234,
        "baseline_objective": 0.2,
        "improvement": 0.25,  # deliberately not (0.2 - 0.1234) / 0.2: it is shown, not recomputed
        "lr_range": {"low": 1e-5, "suggested": 1e-3, "high": 1e-2},
        "lr_band": {"low": 0.002, "high": 0.004, "n_trials": 3},
        "importances": {"lr": 0.62, "beta1": 0.2, "weight_decay": 0.1},
        "diagnostics": {"groups": {"decay": {"p50": 0.012}, "no_decay": {"p50": 0.3}}},
        "trial_number": 7,
        "trial_role": "search",
        "trials": {"complete": 10, "pruned": 2, "fail": 0, "running": 0},
        "workload": "digits_mlp",
        "final": True,
        "snippet": SNIPPET,
    }
    return {**rec, **changes}


def test_text_holds_the_settings_the_gain_and_the_code() -> None:
    text = render_recommendation(recommendation())
    lines = text.splitlines()
    assert lines[0] == "Recommendation for digits_mlp (final; 12 trials: 10 complete, 2 pruned)"
    assert "  optimizer    adamw" in lines
    assert "  lr           0.003123" in lines
    assert "  betas        0.9, 0.995" in lines
    assert "  schedule     cosine, warmup 10 of 200 steps" in lines
    assert "  objective    0.1234  (validation loss of trial 7, search)" in lines
    assert "  baseline     0.2  (untuned Adam, lr 1e-3; tuned is 25.0% lower)" in lines
    assert "suggested 0.001 in [1e-05, 0.01]  (LR range test)" in text
    assert "0.002 .. 0.004  (3 trials within 1% of the best)" in text
    assert "lr 0.62, beta1 0.20, weight_decay 0.10" in text
    assert "decay p50 0.012, no_decay p50 0.3" in text
    assert text.endswith(SNIPPET.rstrip())


def test_a_band_resting_on_one_trial_says_so() -> None:
    band = {"low": 0.002358, "high": 0.002358, "n_trials": 1}
    text = render_recommendation(recommendation(lr_band=band))
    assert "0.002358  (one trial within 1% of the best: no band yet)" in text
    assert "0.002358 .. 0.002358" not in text


def test_a_spread_and_its_seeds_are_shown_where_the_recommendation_carries_them() -> None:
    rec = recommendation(objective_std=0.0042, objective_seeds=[1, 2, 3], baseline_std=0.01,
                         baseline_seeds=[1, 2, 3], objective_selected_on_seed=False)
    text = render_recommendation(rec)
    assert "objective    0.1234 ± 0.0042 over 3 seeds  (validation loss of trial 7" in text
    assert "baseline     0.2 ± 0.01 over 3 seeds" in text
    assert "optimistic" not in text
    one = recommendation(objective_std=None, objective_seeds=[0], objective_selected_on_seed=True)
    assert (
        "objective    0.1234 over 1 seed  (validation loss of trial 7, search; "
        "on the seed it was selected on: optimistic)"
    ) in render_recommendation(one)


def test_partial_and_sparse_recommendations() -> None:
    rec = recommendation(final=False, baseline_objective=None, improvement=None, importances={},
                         lr_range=None, diagnostics=None, trials={"complete": 1, "running": 2})
    text = render_recommendation(rec)
    assert text.splitlines()[0] == (
        "Recommendation for digits_mlp (partial: the search is still running; "
        "3 trials: 1 complete, 2 running)"
    )
    for absent in ("baseline", "importances", "LR range test", "effective step"):
        assert absent not in text
    worse = render_recommendation(recommendation(improvement=-0.1))
    assert "tuned is 10.0% higher" in worse


def test_machine_formats_round_trip() -> None:
    rec = recommendation()
    assert json.loads(render_recommendation(rec, "json")) == rec
    assert yaml.safe_load(render_recommendation(rec, "yaml")) == rec
    assert render_recommendation(rec, "python") == SNIPPET.rstrip()
    with pytest.raises(ValueError, match="text, json, yaml, python"):
        render_recommendation(rec, "toml")


def test_progress_line() -> None:
    job = {"status": "searching", "phase": "trial 3 running",
           "progress": {"trials_completed": 6, "trials_total": 12, "best_objective": 0.25}}
    line = progress_line(job)
    assert line.startswith("searching (trial 3 running)")
    assert "[" + "#" * 15 + "-" * 15 + "] 6/12 trials  best 0.25" in line
