"""Real faults to inject: a PostgreSQL cluster of the test's own, which it can restart under a
running service, and a small disk that fills up.

The cluster is Debian's PostgreSQL 15 server, run as the `postgres` user (initdb refuses root)
on a free port in a temporary folder; it is gone with the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def init(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "--no-sync")

    def start(self) -> None:
        # -w waits until the server accepts connections; no unix socket: the folder is ours.
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                          str(self.folder / "log"), "-o",
                          f"-p {self.port} -k '' -c listen_addresses=127.0.0.1 -c fsync=off",
                          "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-m", mode, "stop")

    def crash_and_restart(self) -> None:
        """What an operator sees when the server is killed: `-m immediate` drops every
        connection without a goodbye."""
        self.stop("immediate")
        self.start()


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    # Not under pytest's tmp_path: that is root's alone (0700), and the server runs as postgres.
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="regimen-pg-")))
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if (cluster.data / "postmaster.pid").exists():
            cluster.stop("immediate")
        shutil.rmtree(cluster.folder, ignore_errors=True)


@contextmanager
def small_disk(folder: Path, size: str = "2M") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder` (the tests run as root, here and in CI)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                   check=True, timeout=30)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True, timeout=30)


def fill(folder: Path) -> None:
    """Write until the disk is full. It may be full already (what a test wrote before can
    fill a small disk): then not even the file can be made, which is as good."""
    try:
        with (folder / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
                os.fsync(filler.fileno())
    except OSError:
        pass
