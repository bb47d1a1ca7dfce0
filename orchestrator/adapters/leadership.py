"""Who leads a realm: a lease row in PostgreSQL with a fencing epoch.

Every orchestrator pointed at the same database and realm runs this. The one
holding the lease is the leader: it renews the lease every ``POLL``
seconds and acts (publishes, connects to the broker) only while its own
monotonic clock says the last renewal is younger than 90% of the lease. The
others are standbys: every ``POLL`` seconds they try to take the lease and
otherwise apply the journal's new batches to their registry.

A standby takes the lease when it has expired (the leader froze, or lost
PostgreSQL) or, sooner, when the leader's database session has ended since
the server started (its process died): ``pg_stat_activity`` no longer lists
the session the leader renewed from. Taking the lease adds one to the epoch;
journal writes carry the epoch and are refused once it moved (pgstore.py),
so a deposed leader can commit nothing, and it learns so at its next write
or renewal, whichever comes first. All times that matter are the server's
clock, except the leader's own "may I still act", which errs early.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from .pg import PgError, PgLink
from .pgstore import PgJournal, read_tail

__all__ = ["Leadership", "LeaderOnly", "POLL"]

log = Logger()

#: seconds between a standby's attempts to take the lease / read the tail
POLL = 0.25
#: batches a standby applies per poll
TAIL_LIMIT = 5000
#: share of the lease a leader trusts itself to act on after a renewal
TRUST = 0.9

_TAKE = """
UPDATE silverline_leader
SET epoch = epoch + 1, holder = %(holder)s, holder_pid = pg_backend_pid(),
    renewed_at = clock_timestamp(), expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE realm = %(realm)s
  AND (expires_at < clock_timestamp()
       OR (renewed_at > pg_postmaster_start_time()
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = holder_pid)))
RETURNING epoch"""

_RENEW = """
UPDATE silverline_leader
SET holder_pid = pg_backend_pid(), renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE realm = %(realm)s AND epoch = %(epoch)s
RETURNING epoch"""

_RELEASE = ("UPDATE silverline_leader SET expires_at = '-infinity' "
            "WHERE realm = %(realm)s AND epoch = %(epoch)s")

_LEADER = ("SELECT epoch, holder, (SELECT max(seq) FROM silverline_journal WHERE realm = %(realm)s) "
           "FROM silverline_leader WHERE realm = %(realm)s")


def _why(failure: Any) -> str:
    text = failure.getErrorMessage().strip()
    return text.splitlines()[0][:200] if text else failure.type.__name__


class Leadership(Service):
    """The lease loop of one orchestrator: standby until it wins, then leader until it stops."""

    def __init__(self, reactor: Any, conninfo: str, journal: PgJournal, *, holder: str,
                 lease: float, follow: Callable[[list[tuple[int, str]]], Any],
                 elected: Callable[[], None], deposed: Callable[[str], None],
                 stepping_down: Callable[[], Any] = lambda: None,
                 resumed: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.monotonic, poll: float = POLL) -> None:
        self._reactor = reactor
        self._journal = journal
        self._link = PgLink(reactor, conninfo, "lease",
                            {"statement_timeout": "3s", "lock_timeout": "2s",
                             "idle_in_transaction_session_timeout": "5s"})
        self.holder = holder
        self.lease = lease
        self._follow, self._elected, self._deposed, self._resumed = follow, elected, deposed, resumed
        self._stepping_down = stepping_down
        self._clock = clock
        self.role = "standby"
        self.epoch = 0                  # ours as leader; the leader's as last seen as standby
        self.leader_holder = ""         # who leads, as last seen
        self.lag_batches = 0            # standby: batches committed that we have not applied
        self.caught_up_at: float | None = None   # standby: when we last had every batch
        self.problem: str | None = None  # why we cannot reach PostgreSQL right now
        self.valid_until = 0.0
        self.takeover_seconds: float | None = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self._poll = poll
        journal.on_fenced = self._fenced

    # -- what the rest asks ----------------------------------------------------------
    def may_act(self) -> bool:
        """True while we lead and our lease is certainly still ours."""
        return self.role == "leader" and self._clock() < self.valid_until

    def health(self) -> dict[str, Any]:
        """What /healthz adds: our role, the epoch (ours, or the leader's we follow)
        and, on a standby, how far it trails."""
        health: dict[str, Any] = {
            "role": "leader" if self.role in ("leader", "stopping") else self.role,
            "epoch": self.epoch, "leader": self.leader_holder or None}
        if self.role == "standby":
            lag = self.lag_seconds()
            health["lag_batches"] = self.lag_batches
            health["lag_seconds"] = None if lag == float("inf") else round(lag, 3)
        return health

    def lag_seconds(self) -> float:
        if self.role != "standby":
            return 0.0
        if self.caught_up_at is None:
            return float("inf")
        return max(0.0, self._clock() - self.caught_up_at)

    def not_ready(self) -> list[str]:
        if self.role == "standby":
            return [f"standby: following the leader {self.leader_holder or '(none yet)'} "
                    f"(epoch {self.epoch}); this orchestrator takes over if it goes away"]
        if self.role == "deposed":
            return ["deposed: another orchestrator took the lease"]
        if not self.may_act():
            return [f"leader without a fresh lease ({self.problem or 'renewal pending'}): "
                    "announcing nothing until it is renewed"]
        return []

    # -- life cycle -------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        self._loop.start(self._poll, now=True)

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        if self.role == "leader":
            self.role = "stopping"
            try:
                # the last batches and a snapshot, while the lease is still ours
                yield maybeDeferred(self._stepping_down).addTimeout(10, self._reactor)
                yield self._link.run(lambda conn: conn.execute(
                    _RELEASE, {"realm": self._journal.realm, "epoch": self.epoch}))
                log.info("leadership of epoch {epoch} released", epoch=self.epoch)
            except Exception as e:
                log.warn("could not release the lease cleanly ({e}); it expires by itself",
                         e=str(e)[:200])
        self._link.close()

    def _tick(self) -> Deferred[None]:
        if self.role == "leader":
            d = self._renew()
        elif self.role == "standby":
            d = self._standby_tick()
        else:
            return succeed(None)
        # an error in what a tick calls (electing, resuming) must not end the loop:
        # a LoopingCall whose Deferred fails stops, and a leader would stop renewing
        return d.addErrback(self._tick_failed)

    def _tick_failed(self, failure: Any) -> None:
        log.failure("leadership tick failed; going on with the next", failure)

    # -- standby ------------------------------------------------------------------------
    def _standby_tick(self) -> Deferred[None]:
        realm = self._journal.realm
        after = self._journal.seq
        started = self._clock()
        params = {"holder": self.holder, "lease": self.lease, "realm": realm}

        def work(conn: Any) -> tuple[int | None, list[tuple[int, str]], Any]:
            won = conn.execute(_TAKE, params).fetchone()
            if won is not None:
                return won[0], read_tail(conn, realm, after), None
            return None, read_tail(conn, realm, after, TAIL_LIMIT), \
                conn.execute(_LEADER, {"realm": realm}).fetchone()

        def done(result: tuple[int | None, list[tuple[int, str]], Any]) -> None:
            self._reachable()
            won, rows, leader = result
            if self.role != "standby":
                return
            try:
                self._follow(rows)
            except LookupError as e:
                self._give_up(f"this standby fell behind the journal ({e}); restart it to reload")
                return
            if won is None:
                if leader is not None:
                    self.epoch, self.leader_holder, newest = leader
                    self.lag_batches = max(0, (newest or 0) - self._journal.seq)
                    if len(rows) < TAIL_LIMIT:
                        self.caught_up_at = self._clock()
                return
            self.epoch, self.leader_holder = won, self.holder
            self._journal.epoch = won
            self.role = "leader"
            self.lag_batches = 0
            self.valid_until = started + TRUST * self.lease
            self.takeover_seconds = self._clock() - started
            log.info("leader of realm {realm} now (epoch {epoch}, journal at batch {seq}, "
                     "took {s:.3f}s)", realm=realm, epoch=won, seq=self._journal.seq,
                     s=self.takeover_seconds)
            self._elected()

        return self._link.run(work).addCallbacks(done, self._unreachable)

    # -- leader ----------------------------------------------------------------------------
    def _renew(self) -> Deferred[None]:
        started = self._clock()
        params = {"lease": self.lease, "realm": self._journal.realm, "epoch": self.epoch}

        def done(row: Any) -> None:
            if self.role != "leader":
                return
            if row is None:
                self._fenced(f"the lease of epoch {self.epoch} was taken over")
                return
            self._reachable()
            self.valid_until = started + TRUST * self.lease
            self._resumed()

        def failed(failure: Any) -> None:
            if self.role == "leader" and self.valid_until > self._clock():
                self.valid_until = self._clock()        # cannot prove it: stop acting now
            self._unreachable(failure)

        return self._link.run(lambda conn: conn.execute(_RENEW, params).fetchone()).addCallbacks(
            done, failed)

    def _fenced(self, why: str) -> None:
        if self.role in ("deposed",):
            return
        self._give_up(f"no longer the leader: {why}")

    def _give_up(self, why: str) -> None:
        self.role = "deposed"
        self.valid_until = 0.0
        if self._loop.running:
            self._loop.stop()
        log.critical("{why}", why=why)
        self._deposed(why)

    # -- PostgreSQL reachable or not ------------------------------------------------------
    def _reachable(self) -> None:
        if self.problem is not None:
            log.info("PostgreSQL reachable again")
            self.problem = None

    def _unreachable(self, failure: Any) -> None:
        if not failure.check(PgError):
            log.failure("leadership check failed", failure)
        why = _why(failure)
        if self.problem is None:
            log.error("PostgreSQL unreachable for the lease ({why}); "
                      "{what}", why=why, what="announcing nothing until the lease is renewed"
                      if self.role == "leader" else "still a standby, retrying")
        self.problem = why


class LeaderOnly(Service):
    """Runs ``inner`` (the broker link) only once this orchestrator leads."""

    def __init__(self, inner: Service) -> None:
        self.inner = inner
        self._active = False

    def activate(self) -> None:
        if self.running and not self._active:
            self._active = True
            self.inner.startService()

    def stopService(self) -> Any:
        super().stopService()
        if self._active:
            self._active = False
            return self.inner.stopService()
        return None
