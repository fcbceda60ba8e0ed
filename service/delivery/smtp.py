"""SMTP, with connections kept open and reused, STARTTLS or implicit TLS, SMTPUTF8 when a mail
needs it and the server offers it, and refusals judged by `service.delivery.bounces`."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import TypeVar

import aiosmtplib

from service.delivery.bounces import refusal
from service.delivery.outgoing import (
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
    needs_smtputf8,
)

T = TypeVar("T")


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
                    except (TemporaryFailure, TimeoutError, aiosmtplib.SMTPException, OSError):
                        # A server that drops the line is as unknown as one that is away: not
                        # promised, nor cached (asked again next time), never the reader's error.
                        return False
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
