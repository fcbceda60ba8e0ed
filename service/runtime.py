"""The service's parts wired together once from the settings, for the web app, the standalone
worker and the CLI alike.

A `Runtime` owns what holds connections (the database, the mail transport, Redis, the CAPTCHA
client) and closes them all on leaving `async with runtime:`.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime

from service.abuse.bots import Blocklist, Captcha, MxCheck
from service.abuse.ip_limits import RateLimits
from service.abuse.mail_budget import MailWindow, mail_windows
from service.core.content import Catalog, Regimen
from service.core.content_store import ContentStore
from service.core.database import Database
from service.core.settings import Settings
from service.delivery.messages import Mailer
from service.delivery.outgoing import Transport
from service.delivery.transports import transport_from_url
from service.delivery.worker import Chore, Pace, Worker
from service.funnel import upkeep
from service.readers.links import Links
from service.readers.tokens import Tokens
from service.readers.writer import SignupWriter


@dataclass
class Runtime:
    settings: Settings
    db: Database
    tokens: Tokens
    links: Links
    content: ContentStore
    mailer: Mailer
    transport: Transport
    rate_limits: RateLimits
    # Per address, counted on the outbox (service.abuse.mail_budget).
    mail_windows: list[MailWindow]
    signups: SignupWriter
    captcha: Captcha | None = None
    blocklist: Blocklist | None = None
    mx_check: MxCheck | None = None

    @property
    def catalog(self) -> Catalog:
        """Every regimen as served now (re-read when the content changes)."""
        return self.content.catalog

    @property
    def regimen(self) -> Regimen:
        """The site's default regimen as served now."""
        return self.content.regimen

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # Each closed even when one before it fails: the database last, as the others may
        # still be finishing work that writes to it.
        async with AsyncExitStack() as stack:
            stack.push_async_callback(self.db.dispose)
            if self.captcha is not None:
                stack.push_async_callback(self.captcha.aclose)
            stack.push_async_callback(self.rate_limits.close)
            stack.push_async_callback(self.transport.close)

    def worker(self) -> Worker:
        every = self.settings.figures_every.total_seconds()
        return Worker(self.db, self.mailer, self.transport, Pace.from_settings(self.settings),
                      chores=(Chore("keeping the author's figures", every, self.keep_figures),)
                      if every else ())

    async def keep_figures(self, now: datetime) -> upkeep.Pass:
        """Count the closed days of the author's figures, and those noted stale; then forget
        raw events past their retention (service.funnel.upkeep)."""
        return await upkeep.keep(self.db, list(self.catalog.regimens.values()), now,
                                 self.settings.scanner_window, self.settings.event_retention)


def build_runtime(settings: Settings, transport: Transport | None = None) -> Runtime:
    """Raises ContentError when the regimen file is broken: the service must not start then."""
    content = ContentStore(settings.content_path)
    tokens = Tokens(settings.secret_keys)
    links = Links(settings.base_url, tokens)
    db = Database(settings.database_url)
    windows = mail_windows(settings.mails_per_address)
    return Runtime(
        settings=settings,
        db=db,
        tokens=tokens,
        links=links,
        content=content,
        mailer=Mailer(settings, links, content),
        transport=transport or transport_from_url(settings.mail_url, settings.data_dir,
                                                  settings.worker_concurrency),
        rate_limits=RateLimits(settings.rate_limit_storage,
                               signups_per_ip=settings.signups_per_ip,
                               link_opens_per_ip=settings.link_opens_per_ip,
                               auth_failures_per_ip=settings.auth_failures_per_ip),
        mail_windows=windows,
        signups=SignupWriter(db, windows),
        captcha=Captcha.from_settings(settings),
        blocklist=Blocklist(settings.disposable_domains_path)
        if settings.disposable_domains_path else None,
        mx_check=MxCheck(settings.mx_nameserver) if settings.check_mx else None,
    )
