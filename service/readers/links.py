"""The reader's personal links, as they appear in mails and on pages."""

from __future__ import annotations

from service.core.models import Subscriber
from service.readers.tokens import Claims, Purpose, Tokens

PATHS = {
    Purpose.CONFIRM: "/confirm/",
    Purpose.REGIMEN: "/r/",
    Purpose.UNSUBSCRIBE: "/unsubscribe/",
    Purpose.ERASE: "/erase/",
    Purpose.LESSONS: "/lessons/stop/",
}


class Links:
    def __init__(self, base_url: str, tokens: Tokens) -> None:
        self.base_url = base_url
        self.tokens = tokens

    def for_subscriber(self, purpose: Purpose, subscriber: Subscriber) -> str:
        claims = Claims(subscriber.public_id, subscriber.token_version)
        return self.base_url + PATHS[purpose] + self.tokens.make(purpose, claims)
