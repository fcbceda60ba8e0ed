"""`regimen embed --regimen KEY`: the snippet for one regimen's blog post."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.helpers import PROJECT_ROOT


@pytest.fixture(autouse=True)
def shipped_content(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REGIMEN_CONTENT_PATH", str(PROJECT_ROOT / "content"))
    monkeypatch.setenv("REGIMEN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REGIMEN_BASE_URL", "https://regimen.example.org")


def test_the_snippet_names_the_regimen_it_delivers() -> None:
    result = CliRunner().invoke(app, ["embed", "--regimen", "neck-and-shoulders",
                                      "--source", "https://blog.example.org/neck"])
    assert result.exit_code == 0, result.output
    assert 'name="regimen" value="neck-and-shoulders"' in result.output
    assert 'action="https://regimen.example.org/subscribe"' in result.output


def test_without_a_regimen_the_snippet_names_none() -> None:
    result = CliRunner().invoke(app, ["embed"])
    assert result.exit_code == 0
    assert 'name="regimen"' not in result.output


def test_an_unknown_regimen_is_refused_with_the_keys_there_are() -> None:
    result = CliRunner().invoke(app, ["embed", "--regimen", "knees"])
    assert result.exit_code == 2
    assert "No regimen 'knees'" in result.output
    assert "sacro-iliac" in result.output
