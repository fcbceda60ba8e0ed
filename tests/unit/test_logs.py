"""Structured logs: JSON a line in production, addresses masked in every format, info lines
buffered and written whole."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import pytest

from service.core import logs
from service.core.settings import Settings, load_settings
from tests.helpers import json_lines


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(_env_file=None, data_dir=tmp_path, secret_keys=["test-key-" + "x" * 40])


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_addresses_are_masked(settings: Settings, log_format: str) -> None:
    settings.log_format = log_format  # type: ignore[assignment]
    stream = io.StringIO()
    logs.configure(settings, stream)
    log = logging.getLogger("service.test")
    log.info("mail to %s refused", "reader.name@example.org")
    log.info("no SMTPUTF8 for ‹jörg.müller@exämple.com>")
    try:
        raise ValueError("no such user <someone@mail.example.net>")
    except ValueError:
        log.exception("failed for other.reader@example.org")
    text = stream.getvalue()
    assert "reader.name@" not in text
    assert "someone@" not in text
    assert "other.reader@" not in text
    assert "j\u00f6rg" not in text
    assert "jörg" not in text
    assert "r***@example.org refused" in text
    assert "s***@mail.example.net" in text
    if log_format == "text":
        assert "no SMTPUTF8 for ‹j***@exämple.com>" in text
    if log_format == "json":
        first, utf8, second = json_lines(stream)
        assert utf8["message"] == "no SMTPUTF8 for ‹j***@exämple.com>"
        assert first["message"] == "mail to r***@example.org refused"
        assert first["level"] == "info"
        assert "ValueError" in str(second["exception"])


def test_production_logs_json_by_default(settings: Settings) -> None:
    assert not logs.uses_json(settings)
    settings.env = "production"
    assert logs.uses_json(settings)
    settings.log_format = "text"
    assert not logs.uses_json(settings)


@pytest.mark.usefixtures("restore_logging")
async def test_info_lines_wait_in_a_buffer_warnings_and_shutdown_do_not(
    settings: Settings,
) -> None:
    written = io.BytesIO()
    stream = io.TextIOWrapper(written, encoding="utf-8")  # writes reach `written` on flush
    logs.configure(settings, stream)
    log = logging.getLogger("service.test")
    log.info("first")
    assert b"first" not in written.getvalue()
    log.warning("second")
    assert b"first" in written.getvalue()
    assert b"second" in written.getvalue()
    log.info("third")
    for _ in range(200):  # the flushing thread's turn comes within FLUSH_EVERY
        if b"third" in written.getvalue():
            break
        await asyncio.sleep(0.05)
    assert b"third" in written.getvalue()
    logs.flush_each_line()
    log.info("fourth")
    assert b"fourth" in written.getvalue()


class RecordingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


@pytest.mark.usefixtures("restore_logging")
def test_buffered_lines_go_out_whole_in_writes_a_pipe_keeps_whole(settings: Settings) -> None:
    stream = RecordingStream()
    logs.configure(settings, stream)
    log = logging.getLogger("service.test")
    for n in range(300):
        log.info("line %d %s", n, "é" * (n % 40))
    logs.flush_each_line()
    assert len(stream.writes) > 1
    assert all(len(text.encode()) <= logs.PIPE_BUF and text.endswith("\n")
               for text in stream.writes)
    assert [line.split(": ", 1)[1].split()[1] for line in stream.getvalue().splitlines()] == [
        str(n) for n in range(300)]
