"""The service's parts wired together once from the settings, for the web app, the standalone
worker and the CLI alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from service.bots import Blocklist, Captcha, MxCheck
from service.config import Settings
from service.content import Regimen, load_regimen
from service.db import Database
from service.links import Links
from service.mail import Mailer
from service.outgoing import Transport
from service.ratelimit import MailWindow, RateLimits, mail_windows
from service.tokens import Tokens
from service.transports import transport_from_url
from service.worker import Pace, Worker
from service.writer import SignupWriter


@dataclass
class Runtime:
    settings: Settings
    db: Database
    tokens: Tokens
    links: Links
    regimen: Regimen
    mailer: Mailer
    transport: Transport
    rate_limits: RateLimits
    # Per address, counted on the outbox (service.ratelimit).
    mail_windows: list[MailWindow]
    signups: SignupWriter
    captcha: Captcha | None = None
    blocklist: Blocklist | None = None
    mx_check: MxCheck | None = None

    def worker(self) -> Worker:
        settings = self.settings
        pace = Pace(
            concurrency=settings.worker_concurrency,
            lease=timedelta(seconds=settings.worker_lease),
            retry_for=timedelta(seconds=settings.retry_for),
            remind_after=timedelta(seconds=settings.reminder_after)
            if settings.reminder_after else None,
            pending_retention=timedelta(seconds=settings.pending_retention),
        )
        return Worker(self.db, self.mailer, self.transport, pace)


def build_runtime(settings: Settings, transport: Transport | None = None) -> Runtime:
    """Raises ContentError when the regimen file is broken: the service must not start then."""
    regimen = load_regimen(settings.content_path)
    tokens = Tokens(settings.secret_keys)
    links = Links(settings.base_url, tokens)
    db = Database(settings.database_url)
    windows = mail_windows(settings.mails_per_address)
    return Runtime(
        settings=settings,
        db=db,
        tokens=tokens,
        links=links,
        regimen=regimen,
        mailer=Mailer(settings, links, regimen),
        transport=transport or transport_from_url(settings.mail_url, settings.data_dir,
                                                  settings.worker_concurrency),
        rate_limits=RateLimits(settings.rate_limit_storage,
                               signups_per_ip=settings.signups_per_ip,
                               link_opens_per_ip=settings.link_opens_per_ip),
        mail_windows=windows,
        signups=SignupWriter(db, windows),
        captcha=Captcha.from_settings(settings),
        blocklist=Blocklist(settings.disposable_domains_path)
        if settings.disposable_domains_path else None,
        mx_check=MxCheck(settings.mx_nameserver) if settings.check_mx else None,
    )
