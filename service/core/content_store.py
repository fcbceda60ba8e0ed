"""The regimen as the running service serves it: the author edits the file, and the service
picks the change up within a second, without a restart.

A changed file that does not validate is refused with the same messages as
`regimen content check`, logged once, and the content that was serving keeps serving, so a
typo never takes the regimen page down. Mails already sent keep working: an exercise that was
removed answers with the usual "not found" page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from service.core.content import ContentError, Regimen, load_regimen

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds between looks at the file: a stat, nothing more


class ContentStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Raises ContentError when the file is broken: the service must not start then."""
        self.path = path
        self.check_every = CHECK_EVERY
        self.clock = clock
        self._stamp = self._stat()
        self._regimen = load_regimen(path)
        self._looked = clock()

    @property
    def regimen(self) -> Regimen:
        """The content to serve now: the file's, if it changed and validates."""
        now = self.clock()
        if now - self._looked >= self.check_every:
            self._looked = now
            self.reload_if_changed()
        return self._regimen

    def reload_if_changed(self) -> bool:
        """Read the file again if it changed since it was last read; say whether the served
        content changed."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            regimen = load_regimen(self.path)
        except ContentError as exc:
            problems = "\n".join(f"  {problem}" for problem in exc.problems)
            log.error("%s changed but cannot be used; the previous content keeps serving:\n%s",
                      self.path, problems)
            return False
        self._regimen = regimen
        log.info("%s reloaded: %d units, %d exercises", self.path, len(regimen.units),
                 len(regimen.exercises()))
        return True

    def _stat(self) -> tuple[int, int] | None:
        # Size too: an editor that saves twice within the file system's clock tick changes
        # the contents without the time.
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size
