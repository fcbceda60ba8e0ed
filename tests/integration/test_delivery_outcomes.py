"""What the worker makes of an SMTP server's answers, through the real transport: a mailbox
refused after DATA is a hard bounce, a mail to a non-ASCII local part goes out with SMTPUTF8 or
fails once with the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from service.core.database import Database
from service.core.models import OutboxMessage, OutboxStatus, Reader, Subscriber
from service.readers.addresses import normalize_address
from service.runtime import Runtime
from service.web.texts import TEXTS
from tests.helpers import MailSink, app_client
from tests.integration.test_outbox import sign_up

StartServer = Callable[..., None]


class RefusingAfterData:
    """Takes the envelope, then refuses the message, as servers that look the mailbox up only
    once they have the message do (and as relays answer for the final server)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return self.answer


@pytest.fixture
def start_smtp(smtp_port: int) -> Iterator[StartServer]:
    """An aiosmtpd server on the port the settings send to, with the given handler."""
    controllers: list[Controller] = []

    def start(handler: object, **options: Any) -> None:
        controller = Controller(handler, hostname="127.0.0.1", port=smtp_port, **options)
        controller.start()
        controllers.append(controller)

    yield start
    for controller in controllers:
        controller.stop()


async def outcome(db: Database, email: str) -> tuple[Reader, OutboxMessage]:
    """The address's reader row (where suppression is kept) and its subscription's mail."""
    async with db.transaction() as session:
        subscription = await session.scalar(select(Subscriber).where(Subscriber.email == email))
        assert subscription is not None
        row = await session.scalar(select(OutboxMessage).where(
            OutboxMessage.subscriber_id == subscription.id))
        assert row is not None
    return subscription.reader, row


async def test_a_mailbox_refused_after_data_is_a_hard_bounce(
    runtime: Runtime, start_smtp: StartServer,
) -> None:
    start_smtp(RefusingAfterData("550 5.1.1 <gone@example.org>: Recipient address rejected: "
                                 "User unknown in virtual mailbox table"))
    await sign_up(runtime.db, "gone@example.org")
    await runtime.worker().deliver_due()
    reader, row = await outcome(runtime.db, "gone@example.org")
    assert row.status is OutboxStatus.FAILED
    assert "5.1.1" in (row.last_error or "")
    assert reader.suppressed_reason == "bounce"
    assert reader.suppressed_at is not None


async def test_a_message_refused_after_data_as_spam_keeps_the_address(
    runtime: Runtime, start_smtp: StartServer,
) -> None:
    start_smtp(RefusingAfterData("550 5.7.1 Message rejected as spam"))
    await sign_up(runtime.db, "reader@example.org")
    await runtime.worker().deliver_due()
    reader, row = await outcome(runtime.db, "reader@example.org")
    assert row.status is OutboxStatus.FAILED
    assert reader.suppressed_at is None


async def test_a_non_ascii_local_part_goes_out_with_smtputf8(
    runtime: Runtime, start_smtp: StartServer,
) -> None:
    sink = MailSink()
    start_smtp(sink, enable_SMTPUTF8=True)
    email = normalize_address("Jörg@exämple.com")
    await sign_up(runtime.db, email)
    assert await runtime.worker().deliver_due() == 1
    [message] = await sink.wait_for(1)
    [envelope] = sink.envelopes
    assert envelope.rcpt_tos == ["jörg@xn--exmple-cua.com"]
    assert envelope.smtp_utf8 is True
    assert str(message["To"]) == "jörg@xn--exmple-cua.com"
    _, row = await outcome(runtime.db, email)
    assert row.status is OutboxStatus.SENT


async def test_a_non_ascii_local_part_without_smtputf8_fails_once_with_the_reason(
    runtime: Runtime, start_smtp: StartServer,
) -> None:
    sink = MailSink()
    start_smtp(sink, enable_SMTPUTF8=False)  # aiosmtpd offers SMTPUTF8 unless told not to
    email = normalize_address("jörg@exämple.com")
    await sign_up(runtime.db, email)
    await runtime.worker().deliver_due()
    reader, row = await outcome(runtime.db, email)
    # At the first attempt, not after three days of retries; and no bounce: the address is
    # fine, our mail server cannot carry it.
    assert row.status is OutboxStatus.FAILED
    assert row.attempts == 1
    assert "SMTPUTF8" in (row.last_error or "")
    assert reader.suppressed_at is None
    assert sink.messages == []
    assert await runtime.transport.delivers_utf8_local_parts() is False


@pytest.mark.parametrize("smtputf8", [True, False])
async def test_the_form_takes_a_non_ascii_local_part_only_when_it_can_be_sent(
    runtime: Runtime, start_smtp: StartServer, smtputf8: bool,
) -> None:
    sink = MailSink()
    start_smtp(sink, enable_SMTPUTF8=smtputf8)
    async with app_client(runtime.settings) as http:
        answer = await http.post("/subscribe", json={"email": "jörg@exämple.com"})
        plain = await http.post("/subscribe", json={"email": "joerg@example.com"})
    assert plain.status_code == 202  # an ASCII address never asks the server
    if smtputf8:
        assert answer.status_code == 202
    else:
        assert answer.status_code == 422
        assert answer.json()["errors"]["email"] == TEXTS.address.not_sendable


async def test_a_server_that_hangs_up_is_no_promise_of_smtputf8(
    runtime: Runtime, smtp_port: int,
) -> None:
    async def greet_then_hang_up(reader: asyncio.StreamReader,
                                 writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example.org ESMTP\r\n")
        await writer.drain()
        await reader.readline()  # the EHLO
        writer.close()

    server = await asyncio.start_server(greet_then_hang_up, "127.0.0.1", smtp_port)
    try:
        assert await runtime.transport.delivers_utf8_local_parts() is False
        async with app_client(runtime.settings) as http:
            answer = await http.post("/subscribe", json={"email": "jörg@exämple.com"})
        # The reader is asked for another address; no crash, no "come back later".
        assert answer.status_code == 422
        assert answer.json()["errors"]["email"] == TEXTS.address.not_sendable
    finally:
        server.close()
        await server.wait_closed()
