"""The author edits the content while the service runs: a good edit (a changed, added or
removed regimen file) is served within a second, a broken one is refused (logged once, with
the checker's messages) and the content that was serving keeps serving."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from service.core.content import ContentError
from service.core.content_store import ContentStore
from tests.helpers import PROJECT_ROOT, shipped_single_file

SHIPPED = shipped_single_file()
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


# A content folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", root)
    return root


def test_a_new_regimen_file_is_served_at_the_next_look(folder: Path) -> None:
    clock = Clock()
    store = ContentStore(folder, clock=clock)
    assert store.catalog.keys() == ["neck-and-shoulders", "sacro-iliac"]
    back = (folder / "regimens" / "sacro-iliac.yaml").read_text()
    (folder / "regimens" / "lower-back.yaml").write_text(back.replace(TITLE, 'title: "Low"'))
    assert store.catalog.get("lower-back") is None
    clock.now += 1.0
    catalog = store.catalog
    assert catalog.keys() == ["lower-back", "neck-and-shoulders", "sacro-iliac"]
    lower_back = catalog.get("lower-back")
    assert lower_back is not None
    assert (lower_back.title, lower_back.author) == ("Low", "Lawrence Gold")
    # The default stays the one site.yaml names.
    assert store.regimen.key == "sacro-iliac"


def test_a_broken_new_file_is_refused_and_the_old_catalog_keeps_serving(
    folder: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    store = ContentStore(folder, clock=clock)
    served = store.catalog
    back = (folder / "regimens" / "sacro-iliac.yaml").read_text()
    (folder / "regimens" / "lower-back.yaml").write_text(
        back.replace("video_url: *gentle_back", "video_url: not-a-link"))
    for _ in range(3):
        clock.now += 1.0
        assert store.catalog is served
    [refusal] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "the previous content keeps serving" in refusal
    assert "  regimens/lower-back.yaml: line " in refusal
    assert "units.0.exercises.0.video_url: must be a full web address" in refusal
    # Fixed: served with the others.
    (folder / "regimens" / "lower-back.yaml").write_text(back)
    clock.now += 1.0
    assert store.catalog.keys() == ["lower-back", "neck-and-shoulders", "sacro-iliac"]


def test_a_removed_file_disappears(folder: Path) -> None:
    clock = Clock()
    store = ContentStore(folder, clock=clock)
    (folder / "regimens" / "neck-and-shoulders.yaml").unlink()
    clock.now += 1.0
    assert store.catalog.keys() == ["sacro-iliac"]
    assert store.catalog.get("neck-and-shoulders") is None


def test_removing_the_default_s_file_is_refused_until_site_yaml_follows(
    folder: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    store = ContentStore(folder, clock=clock)
    (folder / "regimens" / "sacro-iliac.yaml").unlink()
    clock.now += 1.0
    assert store.regimen.key == "sacro-iliac"
    [refusal] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "  site.yaml: line " in refusal
    assert ": default: no regimen has the key 'sacro-iliac'" in refusal
    site = (folder / "site.yaml").read_text()
    (folder / "site.yaml").write_text(site.replace("default: sacro-iliac", ""))
    clock.now += 1.0
    assert store.catalog.keys() == ["neck-and-shoulders"]
    assert store.regimen.key == "neck-and-shoulders"


def test_an_edit_of_site_yaml_reaches_every_regimen(folder: Path) -> None:
    clock = Clock()
    store = ContentStore(folder, clock=clock)
    site = (folder / "site.yaml").read_text()
    (folder / "site.yaml").write_text(site.replace('"Lawrence Gold"', '"L. Gold"'))
    clock.now += 1.0
    assert {regimen.author for regimen in store.catalog.regimens.values()} == {"L. Gold"}


def test_a_broken_folder_still_refuses_to_start(folder: Path) -> None:
    (folder / "site.yaml").unlink()
    with pytest.raises(ContentError) as error:
        ContentStore(folder)
    assert error.value.problems[0].startswith("site.yaml: missing")
