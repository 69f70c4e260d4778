"""Bad input is a 4xx whose ``detail`` names the field and says what to change; never a 5xx.

Every hyperparameter range, the server's budget limits, the body size, the workload
registry (never an import path) and the strings a database refuses (NUL) are covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from api.app import create_app
from tests.integration.api_helpers import in_store, job_body
from tuner import spec
from tuner.db import keys
from tuner.db.engine import upgrade
from tuner.settings import Settings

LIMITS = {"max_trials": 10, "max_steps_per_trial": 100, "max_population": 2}
JSON = {"content-type": "application/json"}


def with_search(**ranges: Any) -> dict[str, Any]:
    return job_body(search=ranges)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('validation') / 'adamtune.db'}"
    upgrade(url)
    _, key = in_store(url, lambda s: keys.create_key(s, "acme"))
    settings = Settings(database_url=url, max_body_bytes=2048, **LIMITS)
    with TestClient(create_app(settings), headers={"X-API-Key": key}) as c:
        yield c


BAD_BODIES = [
    # (case id, body, loc of the error, fragment of its message)
    ("lr low 0", with_search(lr={"low": 0, "high": 1e-2}), ["search", "lr"], "low must be > 0"),
    ("lr negative", with_search(lr={"low": -1e-3, "high": 1e-2}), ["search", "lr"], "> 0"),
    (
        "lr reversed",
        with_search(lr={"low": 1e-2, "high": 1e-4}),
        ["search", "lr"],
        "must be smaller than high",
    ),
    ("lr equal", with_search(lr={"low": 1e-3, "high": 1e-3}), ["search", "lr"], "swap them"),
    (
        "beta1 reaches 1",
        with_search(beta1={"low": 0.9, "high": 1.0}),
        ["search", "beta1"],
        "must lie in [0, 1)",
    ),
    (
        "beta1 negative",
        with_search(beta1={"low": -0.1, "high": 0.9}),
        ["search", "beta1"],
        "[0, 1)",
    ),
    (
        "1-beta2 zero",
        with_search(one_minus_beta2={"low": 0, "high": 0.1}),
        ["search", "one_minus_beta2"],
        "low must be > 0",
    ),
    (
        "1-beta2 reaches 1",
        with_search(one_minus_beta2={"low": 1e-3, "high": 1.0}),
        ["search", "one_minus_beta2"],
        "beta2 = 1 - value must stay > 0",
    ),
    ("eps zero", with_search(eps={"low": 0, "high": 1e-6}), ["search", "eps"], "low must be > 0"),
    (
        "weight decay negative",
        with_search(weight_decay={"low": -1e-4, "high": 1e-2}),
        ["search", "weight_decay"],
        "low must be > 0",
    ),
    (
        "warmup over 0.9",
        with_search(warmup_fraction={"low": 0.0, "high": 0.95}),
        ["search"],
        "warmup_fraction.high must be <= 0.9",
    ),
    (
        "warmup negative",
        with_search(warmup_fraction={"low": -0.1, "high": 0.1}),
        ["search", "warmup_fraction"],
        "low must be >= 0",
    ),
    ("no optimizer", with_search(optimizers=[]), ["search", "optimizers"], "at least 1"),
    ("sgd", with_search(optimizers=["sgd"]), ["search", "optimizers", 0], "'adam' or 'adamw'"),
    (
        "sweep reversed",
        job_body(sweep={"lr_min": 1.0, "lr_max": 1e-3}),
        ["sweep"],
        "lr_min (1.0) must be smaller than lr_max",
    ),
    ("sweep lr_min 0", job_body(sweep={"lr_min": 0}), ["sweep", "lr_min"], "greater than 0"),
    ("smoothing 1", job_body(sweep={"smoothing": 1.0}), ["sweep", "smoothing"], "less than 1"),
    ("grad clip 0", job_body(grad_clip=0), ["grad_clip"], "greater than 0"),
    ("lr floor 1", job_body(lr_floor=1.0), ["lr_floor"], "less than 1"),
    ("one trial", job_body(budget={"trials": 1}), ["budget", "trials"], "greater than or equal"),
    (
        "trials over server limit",
        job_body(budget={"trials": 11, "steps_per_trial": 20, "eval_every": 10}),
        ["budget", "trials"],
        "limit of 10 (ADAMTUNE_MAX_TRIALS)",
    ),
    (
        "steps over server limit",
        job_body(budget={"trials": 4, "steps_per_trial": 101, "eval_every": 10}),
        ["budget", "steps_per_trial"],
        "limit of 100 (ADAMTUNE_MAX_STEPS_PER_TRIAL)",
    ),
    (
        "population over server limit",
        job_body(population=3),
        ["population"],
        "limit of 2 (ADAMTUNE_MAX_POPULATION)",
    ),
    (
        "eval after the end",
        job_body(budget={"trials": 4, "steps_per_trial": 20, "eval_every": 30}),
        [],
        "budget.eval_every (30) must be <= budget.steps_per_trial (20)",
    ),
    (
        "unknown workload",
        job_body(workload="resnet9000"),
        ["workload"],
        "known workloads: digits_mlp, regression_mlp, tiny_transformer",
    ),
    (
        "import path",
        job_body(workload="os:system"),
        ["workload"],
        "never an import path or a file; known workloads: digits_mlp",
    ),
    (
        "dotted module",
        job_body(workload="tuner.workloads.digits"),
        ["workload"],
        "unknown workload 'tuner.workloads.digits'; known workloads: digits_mlp",
    ),
    ("file path", job_body(workload="../evil.py"), ["workload"], "never an import path"),
    ("NUL in name", job_body(name="a\x00b"), ["name"], "must not contain control characters"),
    ("newline in name", job_body(name="a\nb"), ["name"], "control characters"),
    ("long name", job_body(name="n" * 201), ["name"], "at most 200 characters"),
    ("unknown field", job_body(learning_rate=0.1), ["learning_rate"], "unknown field; remove it"),
    ("preset", job_body(preset="fast"), ["preset"], "'default', 'vision'"),
    ("no workload", {"name": "x"}, [], "exactly one of workload (an installed workload"),
    ("command as program", job_body(workload=None, program="python x.py"), ["program"],
     "never a command"),
]


@pytest.mark.parametrize(
    ("body", "loc", "fragment"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_job_is_422_naming_the_field(
    client: TestClient, body: dict[str, Any], loc: list[Any], fragment: str
) -> None:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    matching = [e for e in errors if e["loc"] == ["body", *loc]]
    assert matching, errors
    assert fragment in matching[0]["msg"], matching[0]["msg"]
    assert all("input" not in e for e in errors)  # the input is not echoed back


@pytest.mark.parametrize(
    ("raw", "loc"),
    [
        ('"search": {"lr": {"low": 1e-5, "high": Infinity}}', ["search", "lr", "high"]),
        ('"search": {"eps": {"low": 1e-9, "high": 1e400}}', ["search", "eps", "high"]),
        ('"grad_clip": NaN', ["grad_clip"]),
        ('"sweep": {"lr_max": -Infinity}', ["sweep", "lr_max"]),
    ],
    ids=["infinity", "overflow to infinity", "nan", "minus infinity"],
)
def test_non_finite_numbers_are_refused(client: TestClient, raw: str, loc: list[str]) -> None:
    body = '{"workload": "digits_mlp", ' + raw + "}"
    r = client.post("/v1/jobs", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    [error] = [e for e in r.json()["detail"] if e["loc"] == ["body", *loc]]
    assert error["msg"] == "Input should be a finite number"


def test_several_errors_are_reported_at_once(client: TestClient) -> None:
    body = job_body(seed=-1, population=0, search={"eps": {"low": 0, "high": 1e-6}})
    locs = {tuple(e["loc"]) for e in client.post("/v1/jobs", json=body).json()["detail"]}
    assert {("body", "seed"), ("body", "population"), ("body", "search", "eps")} <= locs


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "json_invalid"),
        (b"[1, 2]", "model_attributes_type"),
        (b"", "missing"),
        (b'{"workload": "digits_mlp", "name": "\\ud800"}', "string_unicode"),
    ],
    ids=["malformed", "not an object", "empty", "lone surrogate"],
)
def test_malformed_bodies_are_422(client: TestClient, content: bytes, fragment: str) -> None:
    r = client.post("/v1/jobs", content=content, headers=JSON)
    assert r.status_code == 422, r.text
    assert fragment in {e["type"] for e in r.json()["detail"]}


def test_body_size_limit_is_413_saying_the_limit(client: TestClient) -> None:
    r = client.post(
        "/v1/jobs", json=job_body(name="x" * 150, search={"optimizers": ["adam"] * 400})
    )
    assert r.status_code == 413
    assert r.json()["detail"].startswith("request body too large: the limit is 2048 bytes")

    def chunks() -> Iterator[bytes]:
        yield b'{"workload": "digits_mlp", "name": "'
        yield b"y" * 4096
        yield b'"}'

    chunked = client.post("/v1/jobs", content=chunks(), headers=JSON)
    assert chunked.status_code == 413 and "ADAMTUNE_MAX_BODY_BYTES" in chunked.json()["detail"]


@pytest.mark.parametrize(
    ("params", "loc", "fragment"),
    [
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 501}, "limit", "less than or equal to 500"),
        ({"offset": -1}, "offset", "greater than or equal to 0"),
        ({"offset": 10**30}, "offset", "less than or equal to"),
        ({"status": "done"}, "status", "'queued', 'sweeping'"),
        ({"workload": "a b"}, "workload", "should match pattern"),
    ],
)
def test_bad_query_is_422(
    client: TestClient, params: dict[str, Any], loc: str, fragment: str
) -> None:
    r = client.get("/v1/jobs", params=params)
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["query", loc] and fragment in error["msg"]


def test_long_idempotency_key_is_422(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "k" * 201})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


def test_database_hostile_input_is_4xx_on_every_backend(migrated_url: str) -> None:
    """NUL and out-of-range integers, which PostgreSQL refuses with a driver error."""
    _, key = in_store(migrated_url, lambda s: keys.create_key(s, "acme"))
    app = create_app(Settings(database_url=migrated_url))
    with TestClient(app, headers={"X-API-Key": key}, raise_server_exceptions=False) as client:
        job_id = client.post("/v1/jobs", json=job_body()).json()["id"]
        for path in ("/v1/jobs/a%00b", "/v1/jobs/a%00b/trials", "/jobs/a%00b"):
            assert client.get(path).status_code == 404, path
        assert client.post("/v1/jobs/a%00b/cancel").status_code == 404
        for params in ({"workload": "a\x00b"}, {"offset": 2**63}, {"limit": 2**63}):
            assert client.get("/v1/jobs", params=params).status_code == 422, params
        assert client.post("/v1/jobs", json=job_body(name="\x00")).status_code == 422
        assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def test_json_without_a_json_content_type_says_to_send_that_header(client: TestClient) -> None:
    r = client.post(
        "/v1/jobs", content=b'{"workload": "digits_mlp"}', headers={"content-type": "text/plain"}
    )
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert "Content-Type 'text/plain'" in err["msg"]
    assert "header Content-Type: application/json" in err["msg"]


def test_a_json_array_is_not_a_job(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=b"[1, 2]", headers=JSON)
    assert r.status_code == 422
    assert "must be one JSON object" in r.json()["detail"][0]["msg"]
    assert "not an array" in r.json()["detail"][0]["msg"]


def test_malformed_json_says_where_and_what(client: TestClient) -> None:
    body = b'{"workload": "digits_mlp",\n "budget": {"trials": 4,}}'
    r = client.post("/v1/jobs", content=body, headers=JSON)
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body"] and err["type"] == "json_invalid"
    assert "line 2, column 25" in err["msg"]
    assert "Expecting property name enclosed in double quotes" in err["msg"]


def test_a_body_that_is_not_utf8_says_so(client: TestClient) -> None:
    r = client.post("/v1/jobs", content=b'{"workload": "digits\xff"}', headers=JSON)
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "not UTF-8: byte 0xff at position 20" in detail
    assert "encoded as UTF-8" in detail


@pytest.mark.parametrize(
    ("body", "loc", "shown"),
    [
        (job_body(budget={"trials": True}), ["body", "budget", "trials"], "true"),
        (job_body(budget={"eval_every": True}), ["body", "budget", "eval_every"], "true"),
        (job_body(seed=False), ["body", "seed"], "false"),
        (with_search(lr={"low": True, "high": 1e-2}), ["body", "search", "lr", "low"], "true"),
    ],
    ids=["trials", "eval_every (true would pass as 1)", "seed", "range bound"],
)
def test_booleans_are_not_numbers(
    client: TestClient, body: dict[str, Any], loc: list[str], shown: str
) -> None:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    errors = {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}
    assert errors[tuple(loc)] == f"{shown} is a boolean, not a number: give a number"


def test_sweep_enabled_still_takes_a_boolean(client: TestClient) -> None:
    r = client.post("/v1/jobs", json=job_body(sweep={"enabled": False}))
    assert r.status_code == 202, r.text


def test_unknown_fields_are_worded_as_the_cli_words_them(
    client: TestClient, tmp_path: Path
) -> None:
    r = client.post("/v1/jobs", json=job_body(colour="red"))
    assert r.status_code == 422
    [err] = r.json()["detail"]
    assert err["loc"] == ["body", "colour"]
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(job_body(colour="red")))
    with pytest.raises(spec.JobFileError) as cli_error:
        spec.load_job_file(job_file)
    assert f"colour: {err['msg']}" in str(cli_error.value)
    assert "remove it or fix its spelling" in err["msg"]


def test_a_long_job_id_is_not_echoed_whole(client: TestClient) -> None:
    job_id = "x" * 5000
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events", f"/jobs/{job_id}"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert "x" * 65 not in r.text, path
        assert "(5000 characters; a job id has 32)" in r.text, path
    short = client.get("/v1/jobs/abc").json()["detail"]
    assert short == "job abc not found; GET /v1/jobs lists your jobs"
