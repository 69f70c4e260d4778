"""docker-compose.yml and the Dockerfile: every command they run is a real entry point."""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from adamtune.cli import build_parser
from tuner.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Compose's ``${VAR:-default}`` with the defaults (what a bare `docker compose up` sees)."""
    if isinstance(value, str):
        return ENV_DEFAULT.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = _interpolate(yaml.safe_load(COMPOSE.read_text()))
    return dict(compose["services"])


def _dockerfile_json(instruction: str) -> list[str]:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith(f"{instruction} "):
            return list(yaml.safe_load(line[len(instruction) + 1 :]))
    raise AssertionError(f"the Dockerfile has no {instruction}")


def _argv(service: dict[str, Any]) -> list[str]:
    """The service's full command line: its entrypoint (or the image's) plus its command."""
    def as_list(value: Any) -> list[str]:
        return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]

    entrypoint = as_list(service.get("entrypoint") or _dockerfile_json("ENTRYPOINT"))
    command = service.get("command")
    return entrypoint + (as_list(command) if command is not None else _dockerfile_json("CMD"))


def _console_scripts() -> set[str]:
    return {ep.name for ep in entry_points(group="console_scripts")}


def _check_adamtune(args: list[str]) -> None:
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit as exc:
        raise AssertionError(f"`adamtune {' '.join(args)}` is not a valid command") from exc
    assert isinstance(parsed, argparse.Namespace)
    module = importlib.import_module(f"adamtune.cli.{parsed.module}")
    assert callable(getattr(module, getattr(parsed, "func_name", "run")))


def test_every_command_is_a_real_entry_point(services: dict[str, Any]) -> None:
    built = [name for name, svc in services.items() if "build" in svc or "image" in svc
             and str(svc["image"]).startswith("adamtune")]
    assert set(built) >= {"migrate", "api", "worker"}
    scripts = _console_scripts()
    for name in built:
        argv = _argv(services[name])
        assert argv[0] in scripts, f"{name}: {argv[0]} is not an installed console script"
        assert argv[0] == "adamtune", f"{name} runs {argv[0]}"
        _check_adamtune(argv[1:])


def test_only_the_api_is_published_and_it_serves_the_dashboard(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything reachable sits behind the API's keys (docs/security.md): no keyless
    optuna-dashboard server; the dashboard is the API's own ``/dashboard``."""
    published = {name: svc["ports"] for name, svc in services.items() if svc.get("ports")}
    assert published == {"api": ["8000:8000"]}
    assert not any("optuna-dashboard" in " ".join(_argv(svc)) for svc in services.values()
                   if "build" in svc)
    for name, value in services["api"]["environment"].items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()
    assert settings.auth == "enabled" and settings.dashboard


def test_the_image_entry_point_and_default_command_are_adamtune() -> None:
    assert _dockerfile_json("ENTRYPOINT") == ["adamtune"]
    _check_adamtune(_dockerfile_json("CMD"))
    assert "adamtune" in _console_scripts()


def test_torch_is_installed_pinned_before_the_project() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    torch = next(i for i, line in enumerate(lines) if "pip install torch==2.13.0" in line)
    project = next(i for i, line in enumerate(lines) if re.match(r"RUN pip install \.( |$)", line))
    assert torch < project


def test_services_start_in_order(services: dict[str, Any]) -> None:
    def condition(name: str, on: str) -> str:
        return str(services[name]["depends_on"][on]["condition"])

    assert services["postgres"]["healthcheck"]["test"]
    assert condition("migrate", "postgres") == "service_healthy"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    for name in ("api", "worker"):
        assert condition(name, "migrate") == "service_completed_successfully"
    assert condition("worker", "api") == "service_healthy"
    assert services["api"]["healthcheck"]["test"]


def test_worker_reserves_an_nvidia_gpu_and_uses_it(services: dict[str, Any]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    argv = _argv(worker)
    assert argv[argv.index("--device") + 1].startswith("cuda:")


def test_every_process_uses_the_same_database(services: dict[str, Any]) -> None:
    names = ("migrate", "api", "worker")
    urls = {services[n]["environment"]["ADAMTUNE_DATABASE_URL"] for n in names}
    assert len(urls) == 1
    (url,) = urls
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
