"""A private PostgreSQL cluster for outage harnesses: its own data directory, port and socket, so it can be stopped
like a crash and started again without touching the machine's PostgreSQL (which other work uses).

initdb and postgres refuse to run as root, so as root they run as the `postgres` user, in a directory it owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from bench.harness import free_port

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"), Path("/usr/lib/postgresql/14/bin"))
SUPERUSER = "postgres"


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine, or the cluster would not start."""


def server_binaries() -> Path:
    """The directory holding initdb, pg_ctl and postgres; raises ClusterUnavailable when there is none."""
    for directory in BIN_DIRS:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise ClusterUnavailable(f"no PostgreSQL server binaries (initdb, pg_ctl) in any of {[str(d) for d in BIN_DIRS]}")


class PrivateCluster:
    """initdb (trust auth) into a fresh temporary directory; `start`, `crash` (immediate stop: no checkpoint,
    backends killed, as on a crash) and `start` again; `remove` at the end."""

    def __init__(self, port: int = 0) -> None:
        self.bin = server_binaries()
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="custody-pg-"))
        self.data = self.root / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.root, SUPERUSER, SUPERUSER)
        self.root.chmod(0o700)
        self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync")

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout_s: float = 60) -> float:
        """Starts the server and waits until it accepts connections (polled every 50 ms, so the figure is close to
        the moment it did; `pg_ctl -w` polls once a second); returns the seconds that took."""
        started = time.monotonic()
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-W", "start")
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return time.monotonic() - started
            except psycopg.OperationalError as exc:
                if time.monotonic() - started > timeout_s:
                    raise ClusterUnavailable(f"the private cluster refused connections for {timeout_s} s") from exc
                time.sleep(0.05)

    def crash(self) -> None:
        """Stops the server at once, as a crash would (`pg_ctl stop -m immediate`: recovery runs at next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateCluster:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root, check=False, timeout=120)
        if check and result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise ClusterUnavailable(f"{tool} failed ({result.returncode}): {result.stderr.strip()} {tail}")
        return result
