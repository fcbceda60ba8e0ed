"""`REGIMEN_MAIL_URL` read into its parts, so a mistake in it stops the service at start-up
with the variable named, before anything tries to send (`service.delivery.transports` builds
the transport from the parsed value)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

SCHEMES = ("console", "file", "smtp", "smtps", "postmark", "mailgun")


@dataclass(frozen=True)
class MailUrl:
    scheme: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    path: Path | None = None
    query: dict[str, str] = field(default_factory=dict)


def parse_mail_url(url: str) -> MailUrl:
    """The URL's parts, or ValueError saying what the scheme needs."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unknown mail transport {scheme!r}: use console:, file:///dir, "
                         "smtp://host:port, smtps://host:port, postmark://TOKEN@ or "
                         "mailgun://KEY@DOMAIN")
    username = unquote(parts.username) if parts.username else None
    if scheme == "file" and not parts.path:
        raise ValueError("file: needs a directory, e.g. file:///var/lib/regimen/mail")
    if scheme in ("smtp", "smtps") and not parts.hostname:
        raise ValueError(f"{scheme}: needs a host, e.g. {scheme}://mail.example.org")
    if scheme == "postmark" and not username:
        raise ValueError("postmark: needs the server token, e.g. postmark://TOKEN@")
    if scheme == "mailgun" and not (username and parts.hostname):
        raise ValueError("mailgun: needs the API key and the sending domain, "
                         "e.g. mailgun://KEY@mg.example.org")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{scheme}: the port must be a number from 0 to 65535") from None
    return MailUrl(
        scheme=scheme,
        host=parts.hostname,
        port=port,
        username=username,
        password=unquote(parts.password) if parts.password else None,
        path=Path(unquote(parts.path)) if scheme == "file" else None,
        query={key: values[-1] for key, values in parse_qs(parts.query).items()},
    )
