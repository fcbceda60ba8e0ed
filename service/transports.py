"""Where mail goes, chosen by `REGIMEN_MAIL_URL`.

- `console:` prints each mail (links visible) and keeps a copy as .eml under DATA_DIR/mail
- `file:///some/dir` writes .eml files only
- `smtp://[user:pass@]host[:port]` plain SMTP, upgraded with STARTTLS when the server offers it
- `smtps://[user:pass@]host[:port]` SMTP over implicit TLS

Transports raise `TemporaryFailure` (try again later) or `PermanentFailure` (never will work).
"""

from __future__ import annotations

import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class FileTransport:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").partition("@")[0]
        (self.directory / f"{name}.eml").write_bytes(message.as_bytes())


class ConsoleTransport:
    """For trying the service out: the confirmation link shows up right in the terminal."""

    def __init__(self, copies: FileTransport) -> None:
        self.copies = copies

    async def send(self, message: EmailMessage) -> None:
        await self.copies.send(message)
        text = message.get_body(("plain",))
        body = text.get_content() if text is not None else ""
        rule = "=" * 72
        sys.stdout.write(
            f"\n{rule}\nMAIL to {message['To']}: {message['Subject']}\n{rule}\n{body}\n"
            f"(saved under {self.copies.directory})\n{rule}\n"
        )
        sys.stdout.flush()


class SmtpTransport:
    def __init__(self, host: str, port: int, username: str | None, password: str | None,
                 implicit_tls: bool) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.implicit_tls = implicit_tls

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.implicit_tls,
                # None: upgrade with STARTTLS whenever the server offers it.
                start_tls=False if self.implicit_tls else None,
                timeout=30,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            failure = PermanentFailure if codes and min(codes) >= 500 else TemporaryFailure
            raise failure(str(exc)) from exc
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
            failure = PermanentFailure if exc.code >= 500 else TemporaryFailure
            raise failure(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Only the reader's address or this message can be refused for good. A refused login
            # or sender is our configuration: mail waits until it is fixed, no address bounces.
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


def transport_from_url(url: str, data_dir: Path) -> Transport:
    parts = urlsplit(url)
    if parts.scheme == "console":
        return ConsoleTransport(FileTransport(data_dir / "mail"))
    if parts.scheme == "file":
        if not parts.path:
            raise ValueError("file: needs a directory, e.g. file:///var/lib/regimen/mail")
        return FileTransport(Path(unquote(parts.path)))
    if parts.scheme in ("smtp", "smtps"):
        if not parts.hostname:
            raise ValueError(f"{parts.scheme}: needs a host, e.g. {parts.scheme}://mail.example.org")
        implicit_tls = parts.scheme == "smtps"
        return SmtpTransport(
            host=parts.hostname,
            port=parts.port or (465 if implicit_tls else 587),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            implicit_tls=implicit_tls,
        )
    raise ValueError(f"unknown mail transport {parts.scheme!r}: use console:, file:///dir, "
                     "smtp://host:port or smtps://host:port")
