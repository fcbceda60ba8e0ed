"""The reader's personal links, as they appear in mails and on pages."""

from __future__ import annotations

from collections.abc import Mapping

from service.core.models import Subscriber
from service.readers.tokens import Claims, Name, Purpose, Tokens

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
        return self.each_for_subscriber({purpose: purpose}, subscriber)[purpose]

    def each_for_subscriber(self, purposes: Mapping[Name, Purpose],
                            subscriber: Subscriber) -> dict[Name, str]:
        """The reader's link for each purpose, by name (a mail's links, signed together)."""
        tokens = self.tokens.make_each(purposes, Claims(subscriber.public_id,
                                                        subscriber.token_version))
        return {name: self.base_url + PATHS[purposes[name]] + token
                for name, token in tokens.items()}
