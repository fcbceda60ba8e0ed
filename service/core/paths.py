"""Where the service finds the folders that live at the top of the repository.

`email_templates/` and `alembic/` (the migrations) stay at the repository's top level, where
the author edits them; the wheel ships a copy of each inside the package, under
`service/_shipped/` (see `[tool.hatch.build.targets.wheel]` in pyproject.toml). An installed
wheel uses its copy; a source checkout or an editable install has none, and uses the folder at
the repository's root.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SHIPPED_DIR = PACKAGE_DIR / "_shipped"
CHECKOUT_DIR = PACKAGE_DIR.parent


def email_templates_dir() -> Path:
    """The mails' templates: one folder per mail (subject.txt, body.txt, body.html), and _base.*"""
    return _shipped("email_templates")


def migrations_dir() -> Path:
    """Alembic's script location: env.py, script.py.mako and versions/."""
    return _shipped("alembic")


def _shipped(name: str) -> Path:
    for candidate in (SHIPPED_DIR / name, CHECKOUT_DIR / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ is neither inside the installed package ({SHIPPED_DIR}) "
                            f"nor beside it ({CHECKOUT_DIR}); reinstall regimen-delivery")
