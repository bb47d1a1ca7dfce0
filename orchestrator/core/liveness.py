"""Keepalive bookkeeping and dead verdicts (docs/protocol.md 10.1), as pure logic.

A runtime is judged by keepalives only once it has sent two: from then on
it may be silent for ``keepalive_misses`` times the longer of the advertised
interval and the rhythm it has actually kept (its longest recent gap). A
runtime that never sends keepalives is judged by its last will alone.

While the orchestrator's own broker link is down nobody is judged, and after
it comes back every runtime gets one full grace period, so our outage is
never mistaken for the fleet's. Deadlines sit in one heap that a periodic
sweep pops; there is no timer per runtime.

When a large share of the fleet goes silent together while our link is up, the
verdicts wait (:mod:`.partition`): a partition between brokers is not a mass
death.

It also remembers what the revival rules need (README "Liveness"): the
keepalive history of dead runtimes (a revived runtime keeps its rhythm), and
the last wills still owed by the old connections of runtimes that registered
again without dying in between.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .model import Module, Runtime
from .partition import PartitionHold

__all__ = ["Liveness", "allowed_silence"]

#: how many recent keepalive gaps make up a runtime's "rhythm"
GAPS_KEPT = 4
#: longest gap that counts towards a rhythm (a revival after days of death must
#: not excuse days of silence afterwards)
MAX_GAP = 3600.0
#: old connections' wills remembered per runtime (each re-registration while alive owes one)
MAX_OWED_WILLS = 4


def allowed_silence(misses: int, ka_interval: float, gaps: Iterable[float]) -> float:
    """How long a runtime judged by keepalives may be silent: the rule above."""
    return misses * max([ka_interval, *gaps])


@dataclass(slots=True)
class _Track:
    last_seen: float
    keepalives: int = 0
    gaps: deque[float] = field(default_factory=lambda: deque(maxlen=GAPS_KEPT))


class Liveness:
    """Last-seen times and keepalive deadlines of alive runtimes."""

    def __init__(self, ka_interval_sec: float, misses: int,
                 runtimes: Callable[[], Iterable[Runtime]] = tuple,
                 partition: PartitionHold | None = None) -> None:
        self._runtimes = runtimes       # all runtimes, for a rebuild after a bulk load
        self.ka_interval = float(ka_interval_sec)
        self.misses = misses
        #: never holds unless given (a share above 1 is never reached)
        self.partition = partition or PartitionHold(share=2.0, min_silent=1, max_hold=0.0)
        self._tracks: dict[str, _Track] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._bus_up = False
        self._bus_up_since = 0.0
        self._tracks_of_dead: dict[str, _Track] = {}
        #: runtime uuid -> wills its earlier connections may still fire
        self._owed_wills: dict[str, int] = {}

    # -- registry observer: start tracking alive runtimes, forget dead ones --
    def runtime_changed(self, old: Runtime | None, new: Runtime | None) -> None:
        if new is not None and new.alive:
            if old is None or not old.alive or old.registered_at != new.registered_at:
                dead_track = self._tracks_of_dead.pop(new.uuid, None)
                if old is not None and not old.alive and old.registered_at == new.registered_at:
                    # revived, not registered: it keeps its history and rhythm
                    self._tracks[new.uuid] = dead_track or _Track(last_seen=new.registered_at)
                    return
                self._tracks[new.uuid] = _Track(last_seen=new.registered_at)
            if old is not None and old.alive and old.registered_at != new.registered_at:
                # registered again without dying: the old connection's will is still owed
                owed = self._owed_wills.get(new.uuid, 0)
                self._owed_wills[new.uuid] = min(owed + 1, MAX_OWED_WILLS)
        elif old is not None:
            self._owed_wills.pop(old.uuid, None)
            track = self._tracks.pop(old.uuid, None)
            if track is not None and new is not None:
                self._tracks_of_dead[new.uuid] = track
            elif new is None:
                self._tracks_of_dead.pop(old.uuid, None)

    def module_changed(self, old: Module | None, new: Module | None) -> None:
        pass

    def reset(self) -> None:
        self._tracks, self._deadlines, self._tracks_of_dead = {}, [], {}
        self._owed_wills = {}
        for runtime in self._runtimes():
            if runtime.alive:
                self._tracks[runtime.uuid] = _Track(last_seen=runtime.registered_at)

    # -- inputs -----------------------------------------------------------------
    def keepalive(self, uuid: str, now: float) -> None:
        track = self._tracks.get(uuid)
        if track is None:
            return
        if track.keepalives:
            track.gaps.append(min(max(0.0, now - track.last_seen), MAX_GAP))
        track.last_seen = max(track.last_seen, now)
        track.keepalives += 1
        if track.keepalives >= 2:
            heapq.heappush(self._deadlines, (self._deadline(track), uuid))
            if len(self._deadlines) > 4 * len(self._tracks) + 1024:
                self._compact()

    def take_stale_will(self, uuid: str) -> bool:
        """Is a delete for this alive runtime the late will of an old connection?

        Yes when it registered again without dying in between (so a will is
        owed) and has since been judged by keepalives (two or more since that
        registration): its deadline then still catches a real death. Consumes
        one owed will.
        """
        owed = self._owed_wills.get(uuid, 0)
        track = self._tracks.get(uuid)
        if not owed or track is None or track.keepalives < 2:
            return False
        if owed > 1:
            self._owed_wills[uuid] = owed - 1
        else:
            del self._owed_wills[uuid]
        return True

    def owed_wills(self, uuid: str) -> int:
        return self._owed_wills.get(uuid, 0)

    def bus_up(self, now: float) -> None:
        """Our broker link is (back) up: everyone gets a full period from now."""
        self._bus_up, self._bus_up_since = True, now

    def bus_down(self) -> None:
        self._bus_up = False

    # -- reads --------------------------------------------------------------------
    def last_seen(self, uuid: str) -> float | None:
        track = self._tracks.get(uuid)
        if track is None:
            track = self._tracks_of_dead.get(uuid)
        return track.last_seen if track is not None else None

    def judged(self) -> int:
        """How many runtimes are judged by keepalives (the rest by their will)."""
        return sum(1 for t in self._tracks.values() if t.keepalives >= 2)

    def _timeout(self, track: _Track) -> float:
        return allowed_silence(self.misses, self.ka_interval, track.gaps)

    def _deadline(self, track: _Track) -> float:
        return max(track.last_seen, self._bus_up_since) + self._timeout(track)

    def silence(self, now: float) -> tuple[int, int]:
        """(silent, judged): runtimes judged by keepalives that missed one, and all of them."""
        silent = judged = 0
        since_up = self._bus_up_since
        for track in self._tracks.values():
            if track.keepalives >= 2:
                judged += 1
                period = self._timeout(track) / self.misses
                if now - max(track.last_seen, since_up) > period:
                    silent += 1
        return silent, judged

    def _compact(self) -> None:
        self._deadlines = [(self._deadline(t), u) for u, t in self._tracks.items()
                           if t.keepalives >= 2]
        heapq.heapify(self._deadlines)

    # -- verdicts -------------------------------------------------------------------
    def overdue(self, now: float) -> list[str]:
        """Runtimes silent past their deadline; empty while our broker link is down
        and while a partition holds the verdicts."""
        if not self._bus_up:
            return []
        dead: list[str] = []
        heap = self._deadlines
        while heap and heap[0][0] <= now:
            _, uuid = heapq.heappop(heap)
            track = self._tracks.get(uuid)
            if track is None or track.keepalives < 2:
                continue
            deadline = self._deadline(track)
            if deadline <= now:
                if uuid not in dead:
                    dead.append(uuid)
            else:
                heapq.heappush(heap, (deadline, uuid))   # seen since, or in grace
        if not dead and not self.partition.holding:
            return dead
        silent, judged = self.silence(now)
        was_holding = self.partition.holding
        if self.partition.hold(now, silent, judged, due=bool(dead)):
            for uuid in dead:                            # judged again at the next sweep
                heapq.heappush(heap, (now, uuid))
            return []
        if was_holding and not self.partition.spent:
            # heard again: like after our own outage, everyone gets a full period
            # from now, so the rest of the fleet can catch up before silence counts
            self._bus_up_since = max(self._bus_up_since, now)
            for uuid in dead:
                heapq.heappush(heap, (self._deadline(self._tracks[uuid]), uuid))
            return []
        return dead

    # -- persistence: last-seen times survive a restart (not journaled) --
    def dump(self) -> dict[str, Any]:
        return {u: [t.last_seen, t.keepalives, list(t.gaps)] for u, t in self._tracks.items()}

    def restore(self, saved: Any) -> None:
        if not isinstance(saved, dict):
            return
        for uuid, value in saved.items():
            track = self._tracks.get(uuid)
            try:
                last_seen, keepalives, gaps = value
                track_value = _Track(float(last_seen), int(keepalives),
                                     deque((float(g) for g in gaps), maxlen=GAPS_KEPT))
            except (TypeError, ValueError):
                continue
            if track is not None and track_value.last_seen >= track.last_seen:
                self._tracks[uuid] = track_value
                if track_value.keepalives >= 2:
                    heapq.heappush(self._deadlines, (self._deadline(track_value), uuid))
