"""What the tests share besides fixtures: a mail sink for aiosmtpd, and reading links."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

BASE_URL = "https://regimen.test"
# Measurements a test wants shown at the end of the run (see conftest.pytest_terminal_summary).
REPORT: list[str] = []
URL_PATTERN = re.compile(r"https?://[^\s\"'<>]+")


class MailSink:
    """An aiosmtpd handler that keeps what it receives, and lets a test wait for it."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.arrived:
            self.envelopes.append(envelope)
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, within: float = 10.0) -> list[EmailMessage]:
        """Wait (without blocking the event loop) until `count` messages have arrived."""
        def wait() -> bool:
            with self.arrived:
                return self.arrived.wait_for(lambda: len(self.messages) >= count, within)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"expected {count} mails, got {len(self.messages)}")
        return self.messages[:count]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def links_in(message: EmailMessage) -> list[str]:
    """Every URL in the plain-text part, in order."""
    part = message.get_body(("plain",))
    assert part is not None
    return URL_PATTERN.findall(part.get_content())


def path_of(url: str) -> str:
    assert url.startswith(BASE_URL), url
    return url.removeprefix(BASE_URL)
