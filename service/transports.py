"""Where mail goes, chosen by `REGIMEN_MAIL_URL`.

- `console:` prints each mail (links visible) and keeps a copy as .eml under DATA_DIR/mail
- `file:///some/dir` writes .eml files only
- `smtp://[user:pass@]host[:port]` plain SMTP, upgraded with STARTTLS when the server offers it
- `smtps://[user:pass@]host[:port]` SMTP over implicit TLS
- `postmark://TOKEN@` and `mailgun://KEY@DOMAIN` HTTP APIs (see `service.providers`)

Every transport is given an `Outgoing` and raises the failures of `service.outgoing`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from service.outgoing import (
    Outgoing,
    PermanentFailure,
    RecipientRejected,
    TemporaryFailure,
    Transport,
)
from service.providers import MailgunTransport, PostmarkTransport

T = TypeVar("T")


class FileTransport:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, outgoing: Outgoing) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = str(outgoing.message["Message-ID"]).strip("<>").partition("@")[0]
        (self.directory / f"{name}.eml").write_bytes(outgoing.data)

    async def close(self) -> None:
        pass


class ConsoleTransport:
    """For trying the service out: the confirmation link shows up right in the terminal."""

    def __init__(self, copies: FileTransport) -> None:
        self.copies = copies

    async def send(self, outgoing: Outgoing) -> None:
        await self.copies.send(outgoing)
        message = outgoing.message
        text = message.get_body(("plain",))
        # The wire format's CRLF would put a stray \r at the end of every printed line (and
        # of a link copied from the terminal).
        body = text.get_content().replace("\r\n", "\n") if text is not None else ""
        rule = "=" * 72
        sys.stdout.write(
            f"\n{rule}\nMAIL to {message['To']}: {message['Subject']}\n{rule}\n{body}\n"
            f"(saved under {self.copies.directory})\n{rule}\n"
        )
        sys.stdout.flush()

    async def close(self) -> None:
        pass


class SmtpTransport:
    """Keeps up to `connections` SMTP sessions open and reuses them; a session the server has
    dropped in the meantime is reopened once before the send counts as failed."""

    def __init__(self, host: str, port: int, username: str | None, password: str | None,
                 implicit_tls: bool, connections: int = 4) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.implicit_tls = implicit_tls
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(connections)

    async def send(self, outgoing: Outgoing) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                client = await self._send_on(client, outgoing)
            except aiosmtplib.SMTPServerDisconnected:
                client = await self._send_on(None, outgoing)
            self._idle.append(client)

    async def _send_on(self, client: aiosmtplib.SMTP | None, outgoing: Outgoing) -> aiosmtplib.SMTP:
        if client is None or not client.is_connected:
            client = self._new_client()
        try:
            if not client.is_connected:
                await _classified(client.connect())
            await _classified(client.sendmail(outgoing.sender, [outgoing.recipient],
                                              outgoing.data))
        except BaseException:
            client.close()
            raise
        return client

    def _new_client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host, port=self.port, username=self.username, password=self.password,
            use_tls=self.implicit_tls,
            # None: upgrade with STARTTLS whenever the server offers it.
            start_tls=False if self.implicit_tls else None,
            timeout=30,
        )

    async def close(self) -> None:
        while self._idle:
            client = self._idle.pop()
            protocol = client.protocol
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                client.close()
            # A TLS connection finishes closing a few round trips after quit() returns; a worker
            # about to exit waits for that (briefly) rather than leave the socket half-closed.
            for _ in range(100):
                if protocol is None or protocol.transport is None:
                    break
                await asyncio.sleep(0.01)


async def _classified(operation: Awaitable[T]) -> T:
    """Await an aiosmtplib call and translate its errors into ours."""
    try:
        return await operation
    except aiosmtplib.SMTPServerDisconnected:
        raise
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [refusal.code for refusal in exc.recipients]
        failure = RecipientRejected if codes and min(codes) >= 500 else TemporaryFailure
        raise failure(str(exc)) from exc
    except aiosmtplib.SMTPRecipientRefused as exc:
        failure = RecipientRejected if exc.code >= 500 else TemporaryFailure
        raise failure(f"{exc.code} {exc.message}") from exc
    except aiosmtplib.SMTPDataError as exc:
        refused: type[Exception] = PermanentFailure if exc.code >= 500 else TemporaryFailure
        raise refused(f"{exc.code} {exc.message}") from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Only the reader's address or this message can be refused for good. A refused login
        # or sender is our configuration: mail waits until it is fixed, no address bounces.
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


def transport_from_url(url: str, data_dir: Path, connections: int = 4) -> Transport:
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
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
            connections=connections,
        )
    if parts.scheme == "postmark":
        if not parts.username:
            raise ValueError("postmark: needs the server token, e.g. postmark://TOKEN@")
        return PostmarkTransport(unquote(parts.username), endpoint=query.get("endpoint"),
                                 stream=query.get("stream"))
    if parts.scheme == "mailgun":
        if not parts.username or not parts.hostname:
            raise ValueError("mailgun: needs the API key and the sending domain, "
                             "e.g. mailgun://KEY@mg.example.org")
        return MailgunTransport(unquote(parts.username), parts.hostname,
                                endpoint=query.get("endpoint"), region=query.get("region"))
    raise ValueError(f"unknown mail transport {parts.scheme!r}: use console:, file:///dir, "
                     "smtp://host:port, smtps://host:port, postmark://TOKEN@ or "
                     "mailgun://KEY@DOMAIN")
