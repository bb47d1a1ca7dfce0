"""Module output: what runtimes publish of their modules' stdout, kept in memory.

Runtimes of each dialect publish a module's output on a topic of their own
(docs/protocol.md 13); :data:`OUTPUT_SOURCES` lists them, one line each, so a
dialect adds its topic here and nothing else changes. The last lines of each
module are kept, bounded per module and in total (the least recently written
module loses its oldest lines first), never journaled: output is for
operators looking now, not state. Each line gets an id that only grows, also
across restarts (ids start at the start time in milliseconds), so a follower
can resume from the last id it saw.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Iterator

from .registry import id_key

__all__ = ["OutputSource", "OUTPUT_SOURCES", "OutputLine", "ModuleOutput",
           "LINES_PER_MODULE", "TOTAL_BYTES", "MAX_LINE"]

#: lines kept per module
LINES_PER_MODULE = 1000
#: characters of output kept over all modules (about this many bytes of text)
TOTAL_BYTES = 16 * 1024 * 1024
#: a longer line is cut to this many characters (and ends with "…")
MAX_LINE = 4096


@dataclass(frozen=True, slots=True)
class OutputSource:
    """A topic a dialect publishes module output on, relative to the realm.

    ``pattern`` levels are literal, ``+`` (any) or ``{module}`` (the module's id).
    """

    dialect: str
    pattern: str
    stream: str = "stdout"

    @property
    def subscription(self) -> str:
        return self.pattern.replace("{module}", "+")

    @property
    def prefix(self) -> str:
        """The literal start of the pattern: a cheap first test for every message."""
        cut = min((i for i in (self.pattern.find("+"), self.pattern.find("{")) if i >= 0),
                  default=len(self.pattern))
        return self.pattern[:cut]

    def module_of(self, levels: list[str]) -> str | None:
        want = self.pattern.split("/")
        if len(levels) != len(want):
            return None
        module = None
        for got, level in zip(levels, want):
            if level == "{module}":
                module = got
            elif level != "+" and level != got:
                return None
        return module or None


OUTPUT_SOURCES: tuple[OutputSource, ...] = (
    # the 2021 simulated runtime pipes a module's stdout (and stderr) there, a line a message
    OutputSource("2021", "proc/debug/stdout/{module}"),
    # 2023 runtimes: the module's stdio channel ($SL/proc/stdio), what it writes, in chunks
    OutputSource("2023", "proc/stdio/{module}"),
    # ARENA's applauncher-runtime: raw text on the module's own topic + /-/stdout, /-/stderr
    OutputSource("arena", "s/+/+/p/{module}/-/stdout"),
    OutputSource("arena", "s/+/+/p/{module}/-/stderr", "stderr"),
)


@dataclass(frozen=True, slots=True)
class OutputLine:
    id: int
    time: float
    stream: str
    text: str

    def to_json(self) -> dict[str, object]:
        from .model import iso
        return {"id": self.id, "time": iso(self.time), "stream": self.stream,
                "text": self.text}


class _Kept:
    __slots__ = ("lines", "dropped_upto")

    def __init__(self) -> None:
        self.lines: deque[OutputLine] = deque()
        #: the id of the newest line of this module that was let go (0: none)
        self.dropped_upto = 0


#: what keeping a module's entry counts against the total, besides its lines
ENTRY_COST = 128


def _lines(payload: bytes) -> list[str]:
    text = payload.decode("utf-8", "replace")
    lines = text.splitlines() or ([text] if text else [])
    return [line if len(line) <= MAX_LINE else line[:MAX_LINE - 1] + "…" for line in lines]


class ModuleOutput:
    """The last lines of each module's output, bounded per module and in total."""

    def __init__(self, realm: str, *, first_id: int = 1,
                 per_module: int = LINES_PER_MODULE, total: int = TOTAL_BYTES,
                 entry_cost: int = ENTRY_COST,
                 sources: tuple[OutputSource, ...] = OUTPUT_SOURCES) -> None:
        self.realm = realm
        self.per_module = per_module
        self.total = total
        self.entry_cost = entry_cost
        self.sources = sources
        self._prefixes = tuple(f"{realm}/{s.prefix}" for s in sources)
        self._kept: OrderedDict[str, _Kept] = OrderedDict()   # least recently written first
        self.size = 0                       # characters kept, and entry costs, over all modules
        self.latest = first_id - 1          # id of the newest line ever added
        #: called with (module key, new lines) after each add
        self.listeners: list[Callable[[str, list[OutputLine]], None]] = []

    def subscriptions(self) -> list[str]:
        return [f"{self.realm}/{s.subscription}" for s in self.sources]

    @staticmethod
    def key(module: str) -> str:
        return id_key(module)

    def accept(self, topic: str, payload: bytes, now: float) -> bool:
        """Keep ``payload`` if ``topic`` is an output topic; False if it is not one."""
        if not topic.startswith(self._prefixes):
            return False
        levels = topic[len(self.realm) + 1:].split("/")
        for source in self.sources:
            module = source.module_of(levels)
            if module is not None:
                self.add(module, source.stream, payload, now)
                return True
        return False

    def add(self, module: str, stream: str, payload: bytes, now: float) -> list[OutputLine]:
        texts = _lines(payload)
        if not texts:
            return []                   # nothing to keep: no entry either
        key = self.key(module)
        kept = self._kept.get(key)
        if kept is None:
            kept = self._kept[key] = _Kept()
            self.size += self.entry_cost    # so many modules of tiny output are bounded too
        else:
            self._kept.move_to_end(key)
        added = []
        for text in texts:
            self.latest += 1
            line = OutputLine(self.latest, now, stream, text)
            kept.lines.append(line)
            self.size += len(text) + 1
            added.append(line)
            if len(kept.lines) > self.per_module:
                self._drop_oldest(kept)
        while self.size > self.total and self._kept:
            oldest_key, oldest = next(iter(self._kept.items()))
            self._drop_oldest(oldest)
            if not oldest.lines:
                del self._kept[oldest_key]
                self.size -= self.entry_cost
        for listener in self.listeners:
            listener(key, added)
        return added

    def _drop_oldest(self, kept: _Kept) -> None:
        line = kept.lines.popleft()
        self.size -= len(line.text) + 1
        kept.dropped_upto = line.id

    def has(self, module: str) -> bool:
        return self.key(module) in self._kept

    def modules(self) -> int:
        return len(self._kept)

    def lines(self, module: str, after: int = 0,
              tail: int | None = None) -> tuple[list[OutputLine], bool]:
        """The kept lines with id > ``after`` (the last ``tail`` of them), and whether
        some lines after ``after`` were let go (the reader missed them)."""
        kept = self._kept.get(self.key(module))
        if kept is None:
            return [], False
        found: Iterator[OutputLine] = (line for line in kept.lines if line.id > after)
        lines = list(found)
        if tail is not None:
            lines = lines[-tail:] if tail else []
        return lines, kept.dropped_upto > after
