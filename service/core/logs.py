"""Logging: one JSON object a line in production (REGIMEN_LOG_FORMAT), each with the id of the
request it belongs to, and email addresses masked in every line whatever the format.

The request id is the caller's `X-Request-ID` when it looks like one (a proxy's), otherwise a
new one; it is sent back in the response's `X-Request-ID`, so a reader's complaint, the proxy's
log and ours can be matched.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import secrets
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from service.core.settings import Settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("service.access")

# \w is Unicode: jörg@exämple.com is an address the service accepts (and sends with SMTPUTF8).
ADDRESS = re.compile(r"([\w.%+-])[\w.%+-]*@([\w-]+(?:\.[\w-]+)+)")
GIVEN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# Minted request ids: this process's random tag and a count, unique without asking the kernel
# for 16 random bytes on every request.
PROCESS_TAG = secrets.token_hex(8)
minted_ids = itertools.count()
FLUSH_EVERY = 0.25  # seconds an info line may wait in the buffer
PIPE_BUF = 4096  # bytes a pipe writes whole (POSIX promises at least 512, Linux 4096)
# LogRecord's own attributes; anything else on a record was passed with `extra=`.
STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_addresses(text: str) -> str:
    return ADDRESS.sub(r"\1***@\2", text)


def mask_ip(ip: str) -> str:
    """Enough of a client's IP to see a pattern in the log, not enough to name a household."""
    if ":" in ip:
        return ":".join(ip.split(":")[:3]) + ":x"
    return ".".join(ip.split(".")[:3]) + ".x"


class MaskAddresses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = mask_addresses(message), None
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)  # the message is masked already (MaskAddresses)
        return mask_addresses(line) if record.exc_info or record.stack_info else line


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Keeps lines back until a thread writes them out, every FLUSH_EVERY seconds; warnings
    and errors go out at once, and every line once the process is shutting down.

    A write per line was a system call per request on the event loop's thread, and each one
    let the signup writer's thread take the interpreter lock from it: a tenth of a signup's
    time (bench/signup.py). The lines go out in writes of whole lines of at most PIPE_BUF
    bytes, which a pipe keeps whole, so that several processes logging into one pipe (the
    `--workers` of one container) never cut into each other's lines. A process killed outright
    loses at most FLUSH_EVERY of info lines.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.flush_each_line = False
        self._pending: list[str] = []
        self._closed = threading.Event()
        threading.Thread(target=self._flush_now_and_then, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record) + self.terminator)
            if self.flush_each_line or record.levelno >= logging.WARNING:
                self.flush()
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            lines, self._pending = self._pending, []
            chunk: list[str] = []
            size = 0
            for line in lines:
                length = len(line.encode("utf-8", "replace"))
                if chunk and size + length > PIPE_BUF:
                    self._write("".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += length
            if chunk:
                self._write("".join(chunk))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()
        super().close()

    def _flush_now_and_then(self) -> None:
        while not self._closed.wait(FLUSH_EVERY):
            self.flush()


def flush_each_line() -> None:
    """From now on write every line out at once. For shutdown: uvicorn ends a SIGTERM by
    raising it again, which kills the process before exit handlers could flush."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BufferedStreamHandler):
            handler.flush_each_line = True
            handler.flush()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current:
            entry["request_id"] = current
        entry.update({k: v for k, v in vars(record).items() if k not in STANDARD})
        if record.exc_info:
            entry["exception"] = mask_addresses(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def uses_json(settings: Settings) -> bool:
    return settings.log_format == "json" or (
        settings.log_format == "auto" and settings.env == "production")


def configure(settings: Settings, stream: Any = None) -> None:
    """Route every logger (uvicorn's too) through one masked handler on stderr."""
    # No caller's file, line or thread in our formats: not looking them up saves a frame walk
    # per line (the logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BufferedStreamHandler(stream or sys.stderr)
    handler.addFilter(MaskAddresses())
    # Our access line names the route template and carries the request id; uvicorn's would
    # repeat it with the raw path, and raw paths hold readers' tokens.
    logging.getLogger("uvicorn.access").disabled = True
    if uses_json(settings):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BufferedStreamHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
