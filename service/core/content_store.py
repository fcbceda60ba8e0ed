"""The regimens as the running service serves them: the author edits, adds or removes a file,
and the service picks the change up within a second, without a restart.

Content that does not validate after a change is refused with the same messages as
`regimen content check`, logged once, and the content that was serving keeps serving, so a
typo never takes a regimen page down. Mails already sent keep working: an exercise (or a
regimen) that was removed answers with the usual "not found" page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from service.core.content import Catalog, ContentError, Regimen, content_files, load_content

log = logging.getLogger(__name__)

CHECK_EVERY = 1.0  # seconds between looks at the files: a few stats, nothing more

# Per file the content is read from: its name, and its modification time and size (None when
# it is missing).
Stamp = tuple[tuple[str, int, int] | tuple[str, None, None], ...]


class ContentStore:
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        """`path` is the content folder or a single regimen file. Raises ContentError when the
        content is broken: the service must not start then."""
        self.path = path
        self.check_every = CHECK_EVERY
        self.clock = clock
        self._stamp = self._stat()
        self._catalog = load_content(path)
        self._looked = clock()

    @property
    def catalog(self) -> Catalog:
        """The content to serve now: the files', if they changed and validate."""
        now = self.clock()
        if now - self._looked >= self.check_every:
            self._looked = now
            self.reload_if_changed()
        return self._catalog

    @property
    def regimen(self) -> Regimen:
        """The default regimen, served now."""
        return self.catalog.default

    def reload_if_changed(self) -> bool:
        """Read the content again if any of its files changed, appeared or went since it was
        last read; say whether the served content changed."""
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            catalog = load_content(self.path)
        except ContentError as exc:
            problems = "\n".join(f"  {problem}" for problem in exc.problems)
            log.error("%s changed but cannot be used; the previous content keeps serving:\n%s",
                      self.path, problems)
            return False
        self._catalog = catalog
        log.info("%s reloaded: %s", self.path, "; ".join(
            f"{key}: {len(regimen.units)} units, {len(regimen.exercises())} exercises"
            for key, regimen in catalog.regimens.items()))
        return True

    def _stat(self) -> Stamp:
        # Size too: an editor that saves twice within the file system's clock tick changes
        # the contents without the time.
        stamp: list[tuple[str, int, int] | tuple[str, None, None]] = []
        for file in content_files(self.path):
            try:
                status = file.stat()
            except OSError:
                stamp.append((str(file), None, None))
            else:
                stamp.append((str(file), status.st_mtime_ns, status.st_size))
        return tuple(stamp)
