"""Settings: read once from `REGIMEN_*` environment variables (and `.env`), validated at start-up.

Everything the service can be told lives in `Settings`; nothing else reads the environment.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.core.mail_url import parse_mail_url
from service.core.paths import email_templates_dir
from service.core.urls import is_bare_origin, is_web_address, web_origin

# Words of the values people copy from docs and examples; such a key is no secret.
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "example", "replace-me", "placeholder")
MIN_SECRET_LENGTH = 32
MIN_PASSWORD_LENGTH = 16

CommaList = Annotated[list[str], NoDecode]


def _seconds(value: object) -> object:
    # The variables hold a number of seconds ("86400"); pydantic's own timedelta parsing
    # would want "1 day" or ISO 8601 there.
    if isinstance(value, str) and value.strip().replace(".", "", 1).isdigit():
        return float(value)
    return value


Seconds = Annotated[timedelta, BeforeValidator(_seconds)]


class ConfigError(Exception):
    """The configuration cannot run; the message says which variable and why."""


# The async drivers the service runs on (each with its blocking twin, service.core.database).
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REGIMEN_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str = ""
    base_url: str = "http://127.0.0.1:8000"
    secret_keys: CommaList = Field(default_factory=list)
    mail_url: str = "console:"
    mail_from: str = "Free Regimen <regimen@localhost>"
    # Where readers' replies go (the author's own mailbox); none: to MAIL_FROM.
    reply_to: str = ""
    # The content folder (site.yaml and regimens/<key>.yaml), or one regimen file holding the
    # site fields too (a one-regimen site).
    content_path: Path = Path("content")
    allowed_origins: CommaList = Field(default_factory=list)
    trusted_proxies: str = "127.0.0.1"
    confirm_max_age: Seconds = Field(default=timedelta(days=7), gt=timedelta(0))
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    worker_lease: Seconds = Field(default=timedelta(minutes=5), ge=timedelta(seconds=5))
    retry_for: Seconds = Field(default=timedelta(days=3), gt=timedelta(0))
    # Zero turns reminders off.
    reminder_after: Seconds = Field(default=timedelta(days=1), ge=timedelta(0))
    pending_retention: Seconds = Field(default=timedelta(days=30), gt=timedelta(0))
    dkim_private_key: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    webhook_secret: str = ""
    rate_limit_storage: str = "memory://"
    captcha_provider: Literal["", "turnstile", "hcaptcha"] = ""
    captcha_site_key: str = ""
    captcha_secret: str = ""
    captcha_verify_url: str = ""
    disposable_domains_path: Path | None = None
    check_mx: bool = False
    mx_nameserver: str = ""
    signups_per_ip: str = "10/minute;50/hour"
    link_opens_per_ip: str = "60/minute"
    mails_per_address: str = "1/5minutes;3/day"
    mailgun_signing_key: str = ""
    admin_password: str = ""
    # Wrong passwords (author's page, webhooks, /metrics) one client IP may send before a 429.
    auth_failures_per_ip: str = "5/minute;20/hour"
    # When set, /metrics wants `Authorization: Bearer <token>`.
    metrics_token: str = ""
    scanner_window: Seconds = Field(default=timedelta(seconds=60), ge=timedelta(0))
    # Raw events older than this are deleted by the worker once the author's daily figures
    # hold them (service.funnel.upkeep); the figures do not change.
    event_retention: Seconds = Field(default=timedelta(days=400), ge=timedelta(days=1))
    # How often the worker counts the author's figures again (service.funnel.upkeep): what a
    # reader already counted does shows on the author's page within this. 0: never (the page
    # then counts every day from the raw rows, as the tests that write rows dated in the past
    # need).
    figures_every: Seconds = Field(default=timedelta(seconds=60), ge=timedelta(0))
    log_format: Literal["auto", "json", "text"] = "auto"

    @field_validator("secret_keys", "allowed_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url_is_absolute(cls, value: str) -> str:
        if not is_web_address(value):
            raise ValueError("must be an absolute http(s) URL such as https://regimen.example.org")
        return value.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        # Browsers compare origins exactly: "https://blog.example.org/" would never match.
        origins = []
        for item in value:
            origin = web_origin(item)
            if origin is None or not is_bare_origin(item):
                raise ValueError(f"{item!r} is not an origin; write it as "
                                 "https://yourblog.blogspot.com (no path)")
            origins.append(origin)
        return origins

    @field_validator("mail_url")
    @classmethod
    def _mail_url_is_known(cls, value: str) -> str:
        parse_mail_url(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        scheme = value.split(":", 1)[0]
        if value and scheme not in DATABASE_SCHEMES:
            raise ValueError("use sqlite+aiosqlite:///path/to/file.db or "
                             "postgresql+asyncpg://user:password@host:5432/name")
        return value

    @field_validator("rate_limit_storage")
    @classmethod
    def _rate_limit_storage_is_known(cls, value: str) -> str:
        if value.split(":", 1)[0] not in ("memory", "redis", "rediss"):
            raise ValueError("use memory:// (one process) or redis://host:6379 (shared)")
        return value

    @field_validator("admin_password", "metrics_token")
    @classmethod
    def _long_enough(cls, value: str) -> str:
        # A short password on a page reachable from anywhere is guessed (issue 13).
        if value and len(value) < MIN_PASSWORD_LENGTH:
            raise ValueError(f"must be at least {MIN_PASSWORD_LENGTH} characters; "
                             "`regimen secret generate` makes a good one")
        return value

    @field_validator("signups_per_ip", "link_opens_per_ip", "mails_per_address",
                     "auth_failures_per_ip")
    @classmethod
    def _limits_parse(cls, value: str) -> str:
        try:
            parse_many(value)
        except ValueError:
            raise ValueError('write limits like "10/minute;50/hour"') from None
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from_has_name(cls, value: str) -> str:
        name, address = parseaddr(value)
        if not name or "@" not in address:
            raise ValueError('must be a display name and an address: "Your Name <you@example.org>"')
        return value

    @field_validator("reply_to")
    @classmethod
    def _reply_to_is_an_address(cls, value: str) -> str:
        if value and "@" not in parseaddr(value)[1]:
            raise ValueError('must be an address, e.g. "you@example.org" or '
                             '"Your Name <you@example.org>"')
        return value

    @model_validator(mode="after")
    def _captcha_is_complete(self) -> Settings:
        if self.captcha_provider and not (self.captcha_site_key and self.captcha_secret):
            raise ValueError("a CAPTCHA needs REGIMEN_CAPTCHA_SITE_KEY and "
                             "REGIMEN_CAPTCHA_SECRET")
        if self.disposable_domains_path and not self.disposable_domains_path.is_file():
            raise ValueError(f"REGIMEN_DISPOSABLE_DOMAINS_PATH: no file at "
                             f"{self.disposable_domains_path}")
        return self

    @model_validator(mode="after")
    def _dkim_is_complete(self) -> Settings:
        given = [bool(self.dkim_private_key), bool(self.dkim_selector), bool(self.dkim_domain)]
        if any(given) and not all(given):
            raise ValueError("DKIM needs all three of REGIMEN_DKIM_PRIVATE_KEY, "
                             "REGIMEN_DKIM_SELECTOR and REGIMEN_DKIM_DOMAIN")
        if self.dkim_private_key:
            self.dkim_key_bytes()
        return self

    @model_validator(mode="after")
    def _production_is_safe(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'regimen.db'}"
        if self.env != "production":
            return self
        problems = []
        if not self.secret_keys:
            problems.append("REGIMEN_SECRET_KEYS is required (try: python -c "
                            "'import secrets; print(secrets.token_urlsafe(48))')")
        for key in self.secret_keys:
            if len(key) < MIN_SECRET_LENGTH or any(w in key.lower() for w in PLACEHOLDER_WORDS):
                problems.append(f"REGIMEN_SECRET_KEYS: every key must be a random string of at "
                                f"least {MIN_SECRET_LENGTH} characters")
                break
        if not self.base_url.startswith("https://"):
            problems.append("REGIMEN_BASE_URL must be https:// in production")
        if self.mail_url.split(":", 1)[0] in ("console", "file"):
            problems.append("REGIMEN_MAIL_URL must be a real mail server in production "
                            "(smtp://, smtps://), not console: or file:")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def dkim_key_bytes(self) -> bytes:
        """The key as PEM, whether the variable holds the PEM itself or a path to it."""
        if "-----BEGIN" in self.dkim_private_key:
            return self.dkim_private_key.replace("\\n", "\n").encode()
        try:
            return Path(self.dkim_private_key).read_bytes()
        except OSError as exc:
            raise ValueError(f"REGIMEN_DKIM_PRIVATE_KEY: cannot read {self.dkim_private_key}: "
                             f"{exc.strerror}") from None

    @property
    def email_templates_dir(self) -> Path:
        return email_templates_dir()


def _development_secret(data_dir: Path) -> str:
    """Generate one secret the first time the service runs on a developer's machine, then reuse
    it, so links in mails printed yesterday still work today."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # Created private: writing first and chmod-ing after leaves it readable by all for a moment.
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as file:
        file.write(secret + "\n")
    return secret


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings, or raise ConfigError naming each bad variable."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = "_".join(str(part) for part in error["loc"])
            name = f"REGIMEN_{field.upper()}" if field else "configuration"
            lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
    if not settings.secret_keys:
        settings.secret_keys = [_development_secret(settings.data_dir)]
    return settings
