"""The production stack, checked without a Docker engine: docker-compose.yml loaded and its
services, commands and environment held against what the app really reads; the Dockerfile's
stages and user."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
import yaml

from service.cli import app
from service.core.settings import Settings, load_settings
from tests.helpers import PROJECT_ROOT

COMPOSE: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (PROJECT_ROOT / "Dockerfile").read_text()
README = (PROJECT_ROOT / "README.md").read_text()
VARIABLE = re.compile(r"\$\{([A-Z_]+)(?::([?-])([^}]*))?\}")
# What a deployer puts into .env, for the check that the stack then starts.
DOT_ENV = {
    "POSTGRES_PASSWORD": "a-database-password",
    "REGIMEN_BASE_URL": "https://regimen.yourdomain.org",
    "REGIMEN_SECRET_KEYS": "Qm9vdHN0cmFwcGVkLXJhbmRvbS1rZXktZm9yLXRlc3Rz-0123456789",
    "REGIMEN_MAIL_FROM": "Lawrence Gold <regimen@yourdomain.org>",
}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:?message}` and `${VAR:-default}`, as docker compose does it."""
    def replace(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise KeyError(f"{name}: {rest}")
        return rest or ""

    return VARIABLE.sub(replace, value)


def regimen_settings(service: str, env: dict[str, str]) -> Settings:
    environment = SERVICES[service]["environment"]
    fields = {key.removeprefix("REGIMEN_").lower(): interpolate(str(value), env)
              for key, value in environment.items() if key.startswith("REGIMEN_")}
    return load_settings(_env_file=None, **fields)


def parse_command(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a `regimen ...` command line as the CLI would; a wrong option raises."""
    assert argv[0] == "regimen"
    group: Any = typer.main.get_command(app)
    context = group.make_context("regimen", argv[1:], resilient_parsing=True)
    name, command, rest = group.resolve_command(context, argv[1:])
    assert name is not None
    assert command is not None
    sub = command.make_context(name, rest, parent=context)
    return name, sub.params


def test_the_stack_has_every_part() -> None:
    assert set(SERVICES) == {"postgres", "redis", "mailpit", "migrate", "web", "worker"}


def test_migrate_runs_once_before_web_and_worker() -> None:
    migrate = SERVICES["migrate"]
    assert parse_command(migrate["command"])[0] == "migrate"
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in ("web", "worker"):
        assert SERVICES[service]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}
    # The rate limits live in Redis once several web processes share them.
    assert "redis" in SERVICES["web"]["depends_on"]
    assert SERVICES["web"]["environment"]["REGIMEN_RATE_LIMIT_STORAGE"].startswith("redis://")


def test_web_runs_several_processes_without_the_mail_worker() -> None:
    name, params = parse_command(SERVICES["web"]["command"])
    assert name == "serve"
    assert params["workers"] >= 2
    assert params["worker"] is False
    assert params["host"] == "0.0.0.0"
    assert parse_command(SERVICES["worker"]["command"])[0] == "worker"
    assert SERVICES["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] in \
        SERVICES["web"]["tmpfs"]


def test_every_variable_is_a_setting() -> None:
    for name in ("migrate", "web", "worker"):
        for key in SERVICES[name]["environment"]:
            if key.startswith("REGIMEN_"):
                assert key.removeprefix("REGIMEN_").lower() in Settings.model_fields, key


def test_production_settings_start_once_dot_env_is_filled() -> None:
    for name in ("migrate", "web", "worker"):
        settings = regimen_settings(name, DOT_ENV)
        assert settings.env == "production"
        assert settings.database_url.startswith("postgresql+asyncpg://regimen:")
        assert settings.database_url.endswith("@postgres:5432/regimen")
        assert settings.log_format == "json"


def test_secrets_come_from_dot_env_never_from_the_file() -> None:
    environment = SERVICES["web"]["environment"]
    for key in ("REGIMEN_SECRET_KEYS", "REGIMEN_BASE_URL", "REGIMEN_MAIL_FROM"):
        assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", environment[key]), key
    assert "${POSTGRES_PASSWORD:?" in environment["REGIMEN_DATABASE_URL"]
    for missing in DOT_ENV:
        partial = {k: v for k, v in DOT_ENV.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            regimen_settings("web", partial)
    # Everything the deployer must set is explained in the README.
    for variable in {m.group(1) for m in VARIABLE.finditer(
            (PROJECT_ROOT / "docker-compose.yml").read_text())}:
        assert f"`{variable}`" in README, variable


def stages() -> list[str]:
    return re.split(r"^FROM ", DOCKERFILE, flags=re.M)[1:]


def test_dockerfile_is_multi_stage_and_runs_as_a_user() -> None:
    *builders, final = stages()
    assert builders
    assert "slim" in final.splitlines()[0]
    users = re.findall(r"^USER (\S+)", final, flags=re.M)
    assert users
    assert users[-1] not in ("root", "0")
    assert "COPY --from=build /opt/venv /opt/venv" in final
    # No test or lint tools anywhere in the image, and no compilers in the final stage.
    assert "[dev]" not in DOCKERFILE
    assert "pip install" not in final
    assert "apt-get" not in final
    assert re.search(r'^CMD \["regimen", "serve"', final, flags=re.M)
    dockerignore = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv", "var", "tests"} <= set(dockerignore)
