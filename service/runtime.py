"""The service's parts wired together once from the settings, for the web app, the standalone
worker and the CLI alike."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.content import Regimen, load_regimen
from service.db import Database
from service.links import Links
from service.mail import Mailer
from service.tokens import Tokens
from service.transports import Transport, transport_from_url
from service.worker import POLL_SECONDS, Worker


@dataclass
class Runtime:
    settings: Settings
    db: Database
    tokens: Tokens
    links: Links
    regimen: Regimen
    mailer: Mailer
    transport: Transport

    def worker(self, poll_seconds: float = POLL_SECONDS) -> Worker:
        return Worker(self.db, self.mailer, self.transport, poll_seconds=poll_seconds)


def build_runtime(settings: Settings, transport: Transport | None = None) -> Runtime:
    """Raises ContentError when the regimen file is broken: the service must not start then."""
    regimen = load_regimen(settings.content_path)
    tokens = Tokens(settings.secret_keys)
    links = Links(settings.base_url, tokens)
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        tokens=tokens,
        links=links,
        regimen=regimen,
        mailer=Mailer(settings, links, regimen),
        transport=transport or transport_from_url(settings.mail_url, settings.data_dir),
    )
