"""The rooms of the test suite, marked by folder: `unit` (no database, no network: seconds;
`make test-fast`), `integration` (SQLite and PostgreSQL, SMTP and HTTP servers in the test
process) and `browser` (Debian's Chromium)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOMS = ("unit", "integration", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        room = Path(item.path).relative_to(Path(__file__).parent).parts[0]
        if room not in ROOMS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, "
                                    "tests/integration or tests/browser")
        item.add_marker(room)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("uvicorn.access").disabled)
    yield
    for handler in root.handlers:
        if handler not in saved[0]:
            handler.close()  # stops its flushing thread
    root.handlers[:], level, logging.getLogger("uvicorn.access").disabled = saved
    root.setLevel(level)
