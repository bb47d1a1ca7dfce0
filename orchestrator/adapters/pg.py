"""One PostgreSQL connection (psycopg 3), used from a thread of its own.

Each link owns one connection and one worker thread, so its statements run
in the order they were asked for and never block the reactor. Statements run
in autocommit: every write is one statement and one transaction, so a process
frozen between two calls (SIGSTOP) holds no lock in the server. A broken
connection is dropped and the next call connects again.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["PgLink", "PgError", "connect"]

T = TypeVar("T")

try:
    import psycopg
    import psycopg.conninfo
    PgError: type[Exception] = psycopg.Error
except ImportError:                      # the [postgres] extra is not installed
    psycopg = None  # type: ignore[assignment]
    PgError = OSError


#: unless the connection string says otherwise: give up on a server that does not
#: answer within seconds, instead of the operating system's minutes, so a lease
#: loop never hangs on a dead link
_LINK_DEFAULTS = {"connect_timeout": "3", "keepalives_idle": "5", "keepalives_interval": "2",
                  "keepalives_count": "2", "tcp_user_timeout": "5000"}


def connect(conninfo: str, settings: dict[str, str]) -> Any:
    if psycopg is None:
        raise RuntimeError('"postgres" is set but psycopg is not installed: '
                           "pip install 'silverline-orchestrator[postgres]'")
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    for name, value in _LINK_DEFAULTS.items():
        params.setdefault(name, value)
    conn = psycopg.connect(psycopg.conninfo.make_conninfo("", **params), autocommit=True)
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", (name, value))
    return conn


class PgLink:
    """A connection plus its worker thread; ``run(work)`` calls ``work(conn)`` there."""

    def __init__(self, reactor: Any, conninfo: str, name: str,
                 settings: dict[str, str] | None = None) -> None:
        self._reactor = reactor
        self._conninfo = conninfo
        self._settings = settings or {}
        self._conn: Any = None
        self._threads = ThreadPool(1, 1, name=f"postgres-{name}")
        self._trigger: Any = None

    def run(self, work: Callable[[Any], T]) -> Deferred[T]:
        if self._trigger is None:           # the thread starts with the first use
            self._threads.start()
            self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown",
                                                                self._threads.stop)
        return deferToThreadPool(self._reactor, self._threads, self.run_here, work)

    def run_here(self, work: Callable[[Any], T]) -> T:
        """``work(conn)`` in the calling thread (start-up only, before the worker is used)."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self._conninfo, self._settings)
        try:
            return work(self._conn)
        except PgError:
            if self._conn.closed or self._conn.broken:
                self._conn = None
            raise

    def close(self) -> None:
        """Close the connection and end the thread (at once, from the reactor thread)."""
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
            self._threads.stop()            # waits for the statement in progress
        if self._conn is not None:
            self._conn.close()
            self._conn = None
