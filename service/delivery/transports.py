"""Where mail goes, chosen by `REGIMEN_MAIL_URL`.

- `console:` prints each mail (links visible) and keeps a copy as .eml under DATA_DIR/mail
- `file:///some/dir` writes .eml files only
- `smtp://[user:pass@]host[:port]` plain SMTP, upgraded with STARTTLS when the server offers it
- `smtps://[user:pass@]host[:port]` SMTP over implicit TLS
- `postmark://TOKEN@` and `mailgun://KEY@DOMAIN` HTTP APIs (see `service.delivery.providers`)

Every transport is given an `Outgoing` and raises the failures of `service.delivery.outgoing`.
An SMTP refusal is judged by its RFC 3463 enhanced status code (see `refusal`), and a mail to a
non-ASCII local part goes out with SMTPUTF8 when the server offers it (see `SmtpTransport`).
"""

from __future__ import annotations

import asyncio
import math
import re
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import aiosmtplib

from service.core.mail_url import parse_mail_url
from service.delivery.outgoing import (
    Outgoing,
    PermanentFailure,
    RecipientRejected,
    TemporaryFailure,
    Transport,
    needs_smtputf8,
)
from service.delivery.providers import MailgunTransport, PostmarkTransport

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

    async def delivers_utf8_local_parts(self) -> bool:
        return True


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

    async def delivers_utf8_local_parts(self) -> bool:
        return True


class SmtpTransport:
    """Keeps up to `connections` SMTP sessions open and reuses them; a session the server has
    dropped in the meantime is reopened once before the send counts as failed.

    Whether the server offers SMTPUTF8 is learned from the EHLO of every session this transport
    opens, so it follows the server as mail flows. Asked before any session (the signup form
    asks when a reader types a non-ASCII local part), it opens one, which the next mail reuses;
    an answer older than `SMTPUTF8_FRESH_SECONDS` is asked again, for a web process that never
    sends (a separate `regimen worker` does)."""

    SMTPUTF8_FRESH_SECONDS = 3600.0
    # A reader waits on the form for this: a server that slow cannot be vouched for.
    PROBE_SECONDS = 5.0

    def __init__(self, host: str, port: int, username: str | None, password: str | None,
                 implicit_tls: bool, connections: int = 4) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.implicit_tls = implicit_tls
        self._idle: list[aiosmtplib.SMTP] = []
        self._connections = connections
        self._slots = asyncio.Semaphore(connections)
        self._smtputf8 = False
        self._smtputf8_learned = -math.inf
        self._probing = asyncio.Lock()

    async def send(self, outgoing: Outgoing) -> None:
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                client = await self._send_on(client, outgoing)
            except aiosmtplib.SMTPServerDisconnected:
                client = await self._send_on(None, outgoing)
            self._idle.append(client)

    async def delivers_utf8_local_parts(self) -> bool:
        if self._smtputf8_stale():
            async with self._probing:  # many signups at once: one probe
                if self._smtputf8_stale():
                    try:
                        async with asyncio.timeout(self.PROBE_SECONDS):
                            await self._probe()
                    except (TemporaryFailure, TimeoutError):
                        return False  # not known: not promised (nor cached: ask again next time)
        return self._smtputf8

    def _smtputf8_stale(self) -> bool:
        return time.monotonic() - self._smtputf8_learned > self.SMTPUTF8_FRESH_SECONDS

    async def _probe(self) -> None:
        """Open a session (which learns what the server offers) and keep it for the next mail."""
        async with self._slots:
            client = self._new_client()
            try:
                await self._connect(client)
            except BaseException:
                client.close()
                raise
            self._idle.append(client)
            # A probe an hour after the last one adds a session: keep no more than sends use.
            while len(self._idle) > self._connections:
                self._idle.pop(0).close()

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        await _classified(client.connect())
        # After STARTTLS, aiosmtplib has asked EHLO again: this is what the server offers now.
        self._smtputf8 = client.supports_extension("smtputf8")
        self._smtputf8_learned = time.monotonic()

    async def _send_on(self, client: aiosmtplib.SMTP | None, outgoing: Outgoing) -> aiosmtplib.SMTP:
        if client is None or not client.is_connected:
            client = self._new_client()
        try:
            if not client.is_connected:
                await self._connect(client)
            await _classified(client.sendmail(outgoing.sender, [outgoing.recipient],
                                              outgoing.data,
                                              mail_options=_mail_options(client, outgoing)))
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


def _mail_options(client: aiosmtplib.SMTP, outgoing: Outgoing) -> list[str]:
    """SMTPUTF8 for a mail whose envelope or headers are not ASCII (RFC 6531, 6532), and only
    then: a plain mail stays plain for every relay on its way."""
    if outgoing.data.isascii() and outgoing.sender.isascii() and outgoing.recipient.isascii():
        return []
    if client.supports_extension("smtputf8"):
        return ["SMTPUTF8"]
    if not outgoing.sender.isascii():
        raise TemporaryFailure(f"REGIMEN_MAIL_FROM {outgoing.sender} needs SMTPUTF8, which "
                               f"the mail server does not offer")
    if needs_smtputf8(outgoing.recipient):
        # Retrying would not help (the server will not learn SMTPUTF8 in the meantime), and the
        # address is not at fault: fail this mail, keep the reader.
        raise PermanentFailure(f"the mail server does not offer SMTPUTF8 (RFC 6531), without "
                               f"which no mail can reach {outgoing.recipient}")
    raise PermanentFailure("the message has non-ASCII headers and the mail server does not "
                           "offer SMTPUTF8")


async def _classified(operation: Awaitable[T]) -> T:
    """Await an aiosmtplib call and translate its errors into ours."""
    try:
        return await operation
    except aiosmtplib.SMTPServerDisconnected:
        raise
    except aiosmtplib.SMTPRecipientsRefused as exc:
        # One recipient per mail: its refusal is the transaction's.
        [first, *_] = exc.recipients
        raise refusal(first.code, first.message, at_rcpt=True)(f"{first.code} {first.message}") \
            from exc
    except aiosmtplib.SMTPRecipientRefused as exc:
        raise refusal(exc.code, exc.message, at_rcpt=True)(f"{exc.code} {exc.message}") from exc
    except aiosmtplib.SMTPDataError as exc:
        raise refusal(exc.code, exc.message, at_rcpt=False)(f"{exc.code} {exc.message}") \
            from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Only the reader's address or this message can be refused for good. A refused login
        # or sender is our configuration: mail waits until it is fixed, no address bounces.
        raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc


# RFC 3463 enhanced status codes (class.subject.detail), as the reply text starts with them.
ENHANCED = re.compile(r"\s*[245]\.(\d{1,3})\.(\d{1,3})(?!\S)")
# The recipient's mailbox is gone or refuses mail: bad mailbox (5.1.1), bad system (5.1.2),
# bad address syntax (5.1.3), moved without forwarding (5.1.6), null MX (5.1.10, RFC 7505),
# mailbox disabled (5.2.1).
MAILBOX_GONE = {(1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1)}
# Ours to fix, whatever the reader's address: our sender address (5.1.7, 5.1.8), our login or
# its encryption (5.7.8, 5.7.9, 5.7.11, 5.7.13, 5.7.14), our SPF, reverse DNS, DKIM/DMARC or
# null MX (5.7.23-5.7.27).
OURS = {(1, 7), (1, 8), (7, 8), (7, 9), (7, 11), (7, 13), (7, 14),
        (7, 23), (7, 24), (7, 25), (7, 26), (7, 27)}
# 5.7.1 at RCPT is usually the recipient's policy, but also how Postfix words a relay that will
# not relay for us and a client IP on a blocklist: suppressing the reader's address for those
# would stop mailing every reader. Read the text for them.
ABOUT_US = re.compile(r"relay|blocked using|block ?list|black ?list|client host|spamhaus",
                      re.IGNORECASE)


def refusal(code: int, text: str, *, at_rcpt: bool) -> type[Exception]:
    """Which failure a 4xx/5xx reply to RCPT (`at_rcpt`) or to the message (after DATA) is."""
    if code < 500 or ABOUT_US.search(text):
        return TemporaryFailure
    enhanced = ENHANCED.match(text)
    if enhanced is None:
        # RFC 5321's basic codes: only RCPT's 550/551/553 say the mailbox is unavailable.
        return RecipientRejected if at_rcpt and code in (550, 551, 553) else PermanentFailure
    status = (int(enhanced[1]), int(enhanced[2]))
    if status in MAILBOX_GONE or (at_rcpt and status == (7, 1)):
        return RecipientRejected
    if status in OURS:
        return TemporaryFailure
    # The message (5.6.x, 5.3.4 too big, 5.7.1 after DATA: content or spam policy), a full
    # mailbox (5.2.2), routing (5.4.x): this mail fails, the address stays.
    return PermanentFailure


def transport_from_url(url: str, data_dir: Path, connections: int = 4) -> Transport:
    """The transport `REGIMEN_MAIL_URL` names; ValueError when it names none."""
    mail = parse_mail_url(url)
    if mail.scheme == "console":
        return ConsoleTransport(FileTransport(data_dir / "mail"))
    if mail.scheme == "file":
        assert mail.path is not None
        return FileTransport(mail.path)
    if mail.scheme == "postmark":
        assert mail.username is not None
        return PostmarkTransport(mail.username, endpoint=mail.query.get("endpoint"),
                                 stream=mail.query.get("stream"))
    if mail.scheme == "mailgun":
        assert mail.username is not None
        assert mail.host is not None
        return MailgunTransport(mail.username, mail.host, endpoint=mail.query.get("endpoint"),
                                region=mail.query.get("region"))
    assert mail.host is not None
    implicit_tls = mail.scheme == "smtps"
    return SmtpTransport(
        host=mail.host,
        port=mail.port or (465 if implicit_tls else 587),
        username=mail.username,
        password=mail.password,
        implicit_tls=implicit_tls,
        connections=connections,
    )
