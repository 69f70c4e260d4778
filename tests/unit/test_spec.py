"""Job files: the examples validate, bad files say which field is wrong and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.spec import JobFileError, JobSpec, load_job_file, parse_job
from tuner.workloads import names

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_and_name_installed_workloads(path: Path) -> None:
    spec = load_job_file(path)
    assert spec.workload in names()


def test_there_is_an_example_per_builtin_workload() -> None:
    workloads = {load_job_file(p).workload for p in EXAMPLES}
    assert {"digits_mlp", "regression_mlp", "tiny_transformer"} <= workloads


def _error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(JobFileError) as info:
        load_job_file(path)
    return str(info.value)


def test_unknown_preset_names_the_field_and_the_choices(tmp_path: Path) -> None:
    msg = _error(tmp_path, "workload: digits_mlp\npreset: bert\n")
    assert "preset" in msg
    for choice in ("default", "vision", "transformer", "finetune", "gan"):
        assert choice in msg


def test_unknown_optimizer_names_the_choices(tmp_path: Path) -> None:
    msg = _error(tmp_path, "workload: digits_mlp\nsearch:\n  optimizers: [sgd]\n")
    assert "search.optimizers.0" in msg and "'adam'" in msg and "'adamw'" in msg


def test_reversed_range_says_what_to_do(tmp_path: Path) -> None:
    msg = _error(tmp_path, "workload: digits_mlp\nsearch:\n  lr: {low: 0.1, high: 0.001}\n")
    assert "search.lr" in msg and "must be smaller than high" in msg


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    msg = _error(tmp_path, "workload: digits_mlp\nbudjet: {trials: 3}\n")
    assert "budjet" in msg and "unknown field; remove it or fix its spelling" in msg


def test_eval_every_must_fit_the_trial(tmp_path: Path) -> None:
    msg = _error(tmp_path, "workload: digits_mlp\nbudget: {steps_per_trial: 20, eval_every: 50}\n")
    assert "eval_every (50) must be <= budget.steps_per_trial (20)" in msg


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(JobFileError, match="cannot read job file"):
        load_job_file(tmp_path / "nope.yaml")
    assert "not valid YAML" in _error(tmp_path, "workload: [unclosed\n")
    assert "must hold a mapping" in _error(tmp_path, "- a list\n")
    assert "workload" in _error(tmp_path, "preset: default\n")


def test_json_body_round_trips() -> None:
    spec = parse_job({"workload": "digits_mlp", "budget": {"trials": 4}})
    assert JobSpec.model_validate(spec.model_dump(mode="json")) == spec
