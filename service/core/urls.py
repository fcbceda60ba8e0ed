"""Web addresses, checked one way everywhere: the settings, the content file, the form's
`source` field and the blogs allowed to embed the form all ask the same two questions."""

from __future__ import annotations

from urllib.parse import urlsplit


def web_origin(url: str) -> str | None:
    """`scheme://host[:port]` in lower case for an absolute http(s) address, else None.

    Browsers compare origins exactly, so this is the form origins are stored and compared in.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def is_web_address(url: str) -> bool:
    """Whether `url` is an absolute http(s) address with a host."""
    return web_origin(url) is not None


def is_bare_origin(url: str) -> bool:
    """Whether `url` is an origin and nothing more: no path, query or fragment."""
    parts = urlsplit(url)
    return is_web_address(url) and not (parts.path.strip("/") or parts.query or parts.fragment)
