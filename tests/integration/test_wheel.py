"""The wheel, installed as a deployer installs it: no repository beside it, nothing editable.

The wheel is built from this checkout and installed alone into a fresh virtualenv; the runtime
dependencies come from the project's own virtualenv through a .pth line (installing them anew
would need the registry and a minute), so everything of the service's own, the package, its
mail templates and its migrations, can only come from the wheel. Then, from an empty folder,
`regimen migrate` and `regimen serve` take one signup through to its confirmation mail.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.helpers import PROJECT_ROOT, free_port, links_in

T = TypeVar("T")
WITHIN = 60.0  # seconds; only a bound for the waits, never a measurement


def _pip(*args: str | Path) -> None:
    # --no-index: the wheel is built with the backend already in this virtualenv (hatchling,
    # from the dev extra) and installed without its dependencies, so nothing is downloaded.
    subprocess.run([sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check",
                    *map(str, args)], check=True, capture_output=True)


def _wait_for(what: str, found: Callable[[], T | None]) -> T:
    deadline = time.monotonic() + WITHIN
    while time.monotonic() < deadline:
        result = found()
        if result is not None:
            return result
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed in it; its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-index", "--no-build-isolation", "--wheel-dir",
         root / "dist", PROJECT_ROOT)
    [wheel] = (root / "dist").glob("regimen_delivery-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True)
    python = root / "venv" / "bin" / "python"
    _pip("--python", python, "install", "--no-deps", "--no-index", wheel)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    ours = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (Path(site_packages) / "_dependencies.pth").write_text("\n".join(ours) + "\n")
    return root / "venv" / "bin"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh SQLite install with its mail written to files, and nothing from the checkout."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("REGIMEN_") and key not in ("PYTHONPATH", "PYTHONHOME")}
    content = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "content", content)
    port = free_port()
    env.update({
        "REGIMEN_DATA_DIR": str(tmp_path / "var"),
        "REGIMEN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'var' / 'regimen.db'}",
        "REGIMEN_MAIL_URL": f"file://{tmp_path / 'mail'}",
        "REGIMEN_CONTENT_PATH": str(content),
        "REGIMEN_BASE_URL": f"http://127.0.0.1:{port}",
        "PORT": str(port),
    })
    return env


def _confirm_links(mail_dir: Path) -> list[str] | None:
    """The /confirm/ links of the first complete mail in `mail_dir`, once there is one."""
    for path in sorted(mail_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if isinstance(message, EmailMessage) and message.get_body(("plain",)) is not None:
            return [url for url in links_in(message) if "/confirm/" in url]
    return None


@pytest.mark.integration
def test_installed_wheel_migrates_serves_and_mails(
    venv: Path, env: dict[str, str], tmp_path: Path,
) -> None:
    cwd = tmp_path / "elsewhere"  # an empty folder: no alembic.ini, no email_templates/ here
    cwd.mkdir()
    where = subprocess.run(
        [venv / "python", "-c", "import service; from service.core import paths; "
         "print(service.__file__, paths.email_templates_dir(), paths.migrations_dir())"],
        cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(venv.parent), where

    subprocess.run([venv / "regimen", "migrate"], cwd=cwd, env=env, check=True,
                   capture_output=True)
    base_url = env["REGIMEN_BASE_URL"]
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen([venv / "regimen", "serve", "--port", env["PORT"]],
                                  cwd=cwd, env=env, stdout=log_file, stderr=log_file)
    try:
        with httpx.Client(base_url=base_url) as http:
            def ready() -> bool | None:
                assert server.poll() is None, log.read_text()
                try:
                    return http.get("/readyz").status_code == 200 or None
                except httpx.TransportError:
                    return None

            _wait_for("GET /readyz to answer 200", ready)
            answer = http.post("/subscribe", json={"email": "reader@example.org"})
            assert answer.status_code == 202, answer.text
        links = _wait_for("the confirmation mail", lambda: _confirm_links(tmp_path / "mail"))
        assert links
        assert all(link.startswith(f"{base_url}/confirm/") for link in links), links
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            returncode = server.wait(timeout=WITHIN)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            raise
    output = log.read_text()
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status shows it
    # (as in tests/integration/test_cli.py); the log says the shutdown was clean.
    assert returncode in (0, -signal.SIGTERM), output
    assert "outbox worker" in output
    assert "stopped" in output
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
