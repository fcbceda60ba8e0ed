"""Settings from REGIMEN_* variables: defaults that run at once, and a production that refuses
to start unsafe."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest

from service.core.settings import ConfigError, Settings, load_settings

GOOD_SECRET = "Jx3vQ9pLm2Rt8Wk5Zy7Bn4Hd6Fs1Gc0Ve9Ua2Ti"
PRODUCTION = {
    "REGIMEN_ENV": "production",
    "REGIMEN_SECRET_KEYS": GOOD_SECRET,
    "REGIMEN_BASE_URL": "https://regimen.example.org",
    "REGIMEN_MAIL_URL": "smtps://relay:pw@smtp.example.org:465",
    "REGIMEN_MAIL_FROM": "Lawrence Gold <regimen@example.org>",
    "REGIMEN_DATABASE_URL": "postgresql+asyncpg://regimen@db/regimen",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets counts: not the developer's shell, nor a .env in the work tree."""
    for field in Settings.model_fields:
        monkeypatch.delenv(f"REGIMEN_{field.upper()}", raising=False)
    monkeypatch.chdir(tmp_path)


def production(monkeypatch: pytest.MonkeyPatch, **changes: str) -> None:
    for name, value in (PRODUCTION | changes).items():
        monkeypatch.setenv(name, value)


def test_defaults_run_on_a_fresh_machine(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.env == "development"
    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite+aiosqlite:///var/regimen.db"
    assert settings.mail_url == "console:"
    assert settings.base_url == "http://127.0.0.1:8000"
    assert settings.allowed_origins == []
    assert (tmp_path / "var" / "secret_key").exists()


def test_the_database_lives_under_data_dir(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    monkeypatch.setenv("REGIMEN_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().database_url == f"sqlite+aiosqlite:///{tmp_path}/data/regimen.db"


def test_comma_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGIMEN_SECRET_KEYS", " newest-key , older-key,,oldest-key ")
    monkeypatch.setenv("REGIMEN_ALLOWED_ORIGINS", "https://blog.example.org,https://example.net")
    settings = load_settings()
    assert settings.secret_keys == ["newest-key", "older-key", "oldest-key"]
    assert settings.allowed_origins == ["https://blog.example.org", "https://example.net"]


def test_a_development_secret_is_made_once_kept_private_and_reused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGIMEN_DATA_DIR", str(tmp_path / "data"))
    first = load_settings().secret_keys
    path = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first == [path.read_text().strip()]
    assert len(first[0]) >= 32
    assert load_settings().secret_keys == first


def test_a_complete_production_config_is_accepted(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    production(monkeypatch)
    settings = load_settings()
    assert settings.env == "production"
    assert settings.secret_keys == [GOOD_SECRET]
    assert settings.mail_from.endswith("<regimen@example.org>")
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(("changes", "variable", "reason"), [
    ({"REGIMEN_SECRET_KEYS": ""}, "REGIMEN_SECRET_KEYS", "required"),
    ({"REGIMEN_SECRET_KEYS": "short-but-random-9f8e"}, "REGIMEN_SECRET_KEYS", "32 characters"),
    ({"REGIMEN_SECRET_KEYS": "change-me-" + "x" * 40}, "REGIMEN_SECRET_KEYS", "random"),
    ({"REGIMEN_SECRET_KEYS": f"{GOOD_SECRET},example-key-{'y' * 30}"},
     "REGIMEN_SECRET_KEYS", "every key"),
    ({"REGIMEN_BASE_URL": "http://regimen.example.org"}, "REGIMEN_BASE_URL", "https://"),
    ({"REGIMEN_MAIL_URL": "console:"}, "REGIMEN_MAIL_URL", "real mail server"),
    ({"REGIMEN_MAIL_URL": "file:///var/mail"}, "REGIMEN_MAIL_URL", "real mail server"),
])
def test_production_refuses_unsafe_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            changes: dict[str, str], variable: str,
                                            reason: str) -> None:
    production(monkeypatch, **changes)
    with pytest.raises(ConfigError, match=rf"{variable}[^;\n]*{reason}"):
        load_settings()
    # A production that refuses must not quietly have made itself a development secret.
    assert not (tmp_path / "var").exists()


def test_production_lists_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    production(monkeypatch, REGIMEN_SECRET_KEYS="", REGIMEN_BASE_URL="http://x.example.org",
               REGIMEN_MAIL_URL="console:")
    with pytest.raises(ConfigError) as error:
        load_settings()
    for variable in ("REGIMEN_SECRET_KEYS", "REGIMEN_BASE_URL", "REGIMEN_MAIL_URL"):
        assert variable in str(error.value)


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("REGIMEN_MAIL_URL", "gopher://mail.example.org", "unknown mail transport 'gopher'"),
    ("REGIMEN_MAIL_URL", "smtp://", "needs a host"),
    ("REGIMEN_MAIL_URL", "file:", "needs a directory"),
    ("REGIMEN_MAIL_FROM", "regimen@example.org", "display name"),
    ("REGIMEN_MAIL_FROM", "Lawrence Gold", "display name"),
    ("REGIMEN_BASE_URL", "regimen.example.org", "absolute http"),
    ("REGIMEN_ENV", "staging", "development"),
    ("REGIMEN_CONFIRM_MAX_AGE", "0", "greater than 0"),
    ("REGIMEN_DATABASE_URL", "mysql+aiomysql://root@db/regimen", "asyncpg://user"),
    ("REGIMEN_DATABASE_URL", "postgresql://db/regimen", "use sqlite"),
    # Short passwords on pages anyone can reach get guessed, in development too.
    ("REGIMEN_ADMIN_PASSWORD", "password1", "at least 16 characters"),
    ("REGIMEN_METRICS_TOKEN", "metrics", "at least 16 characters"),
    ("REGIMEN_AUTH_FAILURES_PER_IP", "often", "10/minute;50/hour"),
    ("REGIMEN_WORKER_LEASE", "1", "greater than or equal to 5 seconds"),
    ("REGIMEN_RETRY_FOR", "three days", "valid timedelta"),
    ("REGIMEN_REPLY_TO", "the author", "must be an address"),
])
def test_bad_values_name_their_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                        value: str, reason: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=rf"^{variable}: .*{reason}"):
        load_settings()


def test_durations_are_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGIMEN_REMINDER_AFTER", "3600")
    monkeypatch.setenv("REGIMEN_SCANNER_WINDOW", "0")
    monkeypatch.setenv("REGIMEN_CONFIRM_MAX_AGE", "86400.5")
    settings = load_settings()
    assert settings.reminder_after == timedelta(hours=1)
    assert settings.scanner_window == timedelta(0)
    assert settings.confirm_max_age == timedelta(days=1, milliseconds=500)
    # The defaults, said once (in Settings) for everything that uses them.
    assert settings.worker_lease == timedelta(minutes=5)
    assert settings.pending_retention == timedelta(days=30)


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("REGIMEN_BASE_URL=https://from-dotenv.example.org/\n")
    assert load_settings().base_url == "https://from-dotenv.example.org"


def test_allowed_origins_are_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGIMEN_ALLOWED_ORIGINS", "https://Blog.Example.org/, http://127.0.0.1:8080")
    assert load_settings().allowed_origins == ["https://blog.example.org", "http://127.0.0.1:8080"]
    monkeypatch.setenv("REGIMEN_ALLOWED_ORIGINS", "https://blog.example.org/2014/post.html")
    with pytest.raises(ConfigError, match="REGIMEN_ALLOWED_ORIGINS: .*not an origin"):
        load_settings()
