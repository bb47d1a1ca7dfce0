"""A partition is not a mass death: when to hold keepalive verdicts (README "Partitions").

When a bridge or cluster link between brokers drops, every runtime on the far
side goes silent at once while our own link stays up. Declaring them dead one
by one would move all their modules for nothing. So, as Kubernetes' node
lifecycle controller stops evicting in a disrupted zone, silence verdicts are
held while a large share of the fleet is silent, and resume once it is heard
again (everyone then gets a full period, as after our own outage, and those
still silent after it are declared), or after a limit.
"""

from __future__ import annotations

from twisted.logger import Logger

__all__ = ["PartitionHold"]


class PartitionHold:
    """Decides, sweep by sweep, whether silence verdicts wait.

    A runtime is *silent* when it has missed at least one keepalive (quiet for
    longer than its period). Verdicts are held while at least ``min_silent``
    runtimes, and at least ``share`` of those judged by keepalives, are silent;
    for at most ``max_hold`` seconds per episode.
    """

    log = Logger()

    def __init__(self, share: float, min_silent: int, max_hold: float) -> None:
        self.share, self.min_silent, self.max_hold = share, min_silent, max_hold
        self.since: float | None = None     # holding since (None: judging normally)
        self._spent = False                 # this episode hit max_hold: judge until it ends
        self.silent = self.judged = 0       # as of the last look
        self.holds = 0                      # episodes so far

    @property
    def holding(self) -> bool:
        return self.since is not None

    @property
    def spent(self) -> bool:
        """This episode reached ``max_hold``: verdicts go ahead until it is over."""
        return self._spent

    def looks_partitioned(self, silent: int, judged: int) -> bool:
        return silent >= self.min_silent and silent >= self.share * judged

    def hold(self, now: float, silent: int, judged: int, due: bool = True) -> bool:
        """Should the verdicts due now wait? ``due``: some are (else the episode ends)."""
        self.silent, self.judged = silent, judged
        if not due or not self.looks_partitioned(silent, judged):
            self.end(now)
            return False
        if self._spent:
            return False
        if self.since is None:
            self.since = now
            self.holds += 1
            self.log.warn("{silent} of {judged} runtimes went silent together while our broker "
                          "link is up: a partition between brokers? Holding their dead "
                          "verdicts (for at most {max:.0f}s)", silent=silent, judged=judged,
                          max=self.max_hold)
        if now - self.since < self.max_hold:
            return True
        self.log.warn("{silent} of {judged} runtimes still silent after holding verdicts for "
                      "{max:.0f}s: judging them again", silent=silent, judged=judged,
                      max=self.max_hold)
        self.since, self._spent = None, True
        return False

    def end(self, now: float) -> None:
        """Nothing is due, or the silent share is small again: the episode is over."""
        if self.since is not None:
            self.log.info("runtimes heard again after {s:.1f}s of held verdicts ({silent} of "
                          "{judged} still silent): judging normally", s=now - self.since,
                          silent=self.silent, judged=self.judged)
        self.since, self._spent = None, False

    def reason(self) -> str | None:
        """For /readyz, while holding."""
        if self.since is None:
            return None
        return (f"dead verdicts held: {self.silent} of {self.judged} runtimes went silent "
                f"together (a partition between brokers?)")
