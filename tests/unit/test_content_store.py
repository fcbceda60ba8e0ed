"""The author edits the regimen file while the service runs: a good edit is served within a
second, a broken one is refused (logged once, with the checker's messages) and the content
that was serving keeps serving."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from service.core.content import ContentError
from service.core.content_store import ContentStore
from tests.helpers import PROJECT_ROOT

SHIPPED = (PROJECT_ROOT / "content" / "regimen.yaml").read_text()
TITLE = 'title: "Self-relief regimen for sacro-iliac joint pain"'


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def content(tmp_path: Path) -> Path:
    path = tmp_path / "regimen.yaml"
    path.write_text(SHIPPED)
    return path


def test_an_edit_is_served_at_the_next_look(content: Path) -> None:
    clock = Clock()
    store = ContentStore(content, clock=clock)
    content.write_text(SHIPPED.replace(TITLE, 'title: "Sacro-iliac relief, edited"'))
    # Between looks the file is not even touched.
    assert store.regimen.title == "Self-relief regimen for sacro-iliac joint pain"
    clock.now += 1.0
    assert store.regimen.title == "Sacro-iliac relief, edited"


def test_a_broken_edit_is_refused_and_the_old_content_keeps_serving(
    content: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    store = ContentStore(content, clock=clock)
    content.write_text(SHIPPED.replace("video_url: *gentle_back", "video_url: not-a-link"))
    for _ in range(3):
        clock.now += 1.0
        assert store.regimen.title == "Self-relief regimen for sacro-iliac joint pain"
    [refusal] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = refusal.getMessage()
    assert "the previous content keeps serving" in message
    assert "units.0.exercises.0.video_url: must be a full web address" in message
    # Fixed: served again.
    content.write_text(SHIPPED.replace(TITLE, 'title: "Fixed"'))
    clock.now += 1.0
    assert store.regimen.title == "Fixed"


def test_a_file_saved_in_another_encoding_is_refused_not_a_crash(
    content: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    store = ContentStore(content, clock=clock)
    content.write_bytes(SHIPPED.replace(TITLE, 'title: "Übungen"').encode("cp1252", "replace"))
    clock.now += 1.0
    assert store.regimen.title == "Self-relief regimen for sacro-iliac joint pain"
    [refusal] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "not UTF-8; save the file as UTF-8" in refusal


def test_a_deleted_file_keeps_the_old_content(content: Path) -> None:
    clock = Clock()
    store = ContentStore(content, clock=clock)
    content.unlink()
    clock.now += 1.0
    assert store.regimen.title == "Self-relief regimen for sacro-iliac joint pain"


def test_a_broken_file_still_refuses_to_start(content: Path) -> None:
    content.write_text("title: [")
    with pytest.raises(ContentError):
        ContentStore(content)
