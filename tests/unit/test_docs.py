"""The README promises what the code does."""

from __future__ import annotations

import re

from service.core.settings import Settings
from tests.helpers import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def test_configuration_table_lists_every_setting() -> None:
    documented = set(re.findall(r"^\| `REGIMEN_([A-Z_]+)` \|", README, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README
    assert "make test" in README
