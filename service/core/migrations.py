"""The schema's migrations (alembic/, shipped inside the wheel too), run by `regimen migrate`
and the tests."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from service.core.database import prepare_sqlite_dir
from service.core.paths import migrations_dir


def alembic_config(url: str) -> Config:
    """Alembic's configuration for `url`, made here rather than read from alembic.ini, which an
    installed wheel does not have. It says what alembic.ini says (which the plain `alembic`
    command still reads), less the logging: the service configures its own."""
    config = Config()
    for name, value in (
        ("script_location", str(migrations_dir())),
        ("file_template", "%(year)d%(month).2d%(day).2d_%(rev)s_%(slug)s"),
        ("path_separator", "os"),
        ("sqlalchemy.url", url),
    ):
        config.set_main_option(name, value.replace("%", "%%"))  # ConfigParser interpolates
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str, default_regimen: str = "") -> None:
    """Bring the database schema up to date. Must not be called from a running event loop.

    `default_regimen`: the key of the regimen that readers from before there were several
    regimens are subscribed to (migration 0011); `regimen migrate` passes the content's."""
    prepare_sqlite_dir(url)
    config = alembic_config(url)
    config.attributes["default_regimen"] = default_regimen
    command.upgrade(config, "head")
