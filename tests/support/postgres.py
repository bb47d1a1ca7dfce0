"""A private PostgreSQL cluster on a free port in a temporary directory.

Never the machine's own server on 5432: ``initdb`` makes a fresh cluster, the
socket lives in the cluster's directory, and it listens on 127.0.0.1 only.
As root, the server runs as the ``postgres`` user (it refuses to run as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.broker import free_port

_CANDIDATES = ("/usr/local/bin", "/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/14/bin", "/usr/lib/postgresql/13/bin")


def pg_bin(name: str) -> str | None:
    """Where ``initdb`` / ``pg_ctl`` are: on PATH, /usr/local/bin or Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _CANDIDATES:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


class PostgresCluster:
    """initdb + pg_ctl: start, stop, restart, destroy; ``dsn`` is a libpq connection string."""

    def __init__(self, port: int | None = None) -> None:
        # its own folder under /tmp: pytest's are private to root, the server runs as postgres
        self.dir = Path(tempfile.mkdtemp(prefix="silverline-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = port or free_port()
        self._as_postgres = os.geteuid() == 0
        self.user = "postgres"          # the cluster's superuser (initdb -U)
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found; "
                               "apt-get install postgresql")
        self._initdb, self._pg_ctl = initdb, pg_ctl

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user={self.user} connect_timeout=2"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        cmd = list(argv)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, timeout=60)

    def init(self) -> "PostgresCluster":
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(self._initdb, "-D", str(self.data), "-A", "trust", "-U", self.user,
                  "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.dir}'\n"
                       "max_connections = 100\nshared_buffers = 32MB\n")
        return self

    def start(self) -> None:
        self._run(self._pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(self._pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def restart(self) -> None:
        self._run(self._pg_ctl, "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w",
                  "-t", "30", "restart")


def fresh_database(cluster: PostgresCluster, name: str) -> str:
    """An empty database in ``cluster`` (one per test: no test sees another's rows)."""
    import psycopg
    with psycopg.connect(cluster.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return cluster.dsn.replace("dbname=postgres", f"dbname={name}")
