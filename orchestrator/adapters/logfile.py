"""Logs to ``log_dir`` next to twistd's own stdout log, and the systemd ready signal.

The file is opened when the service tree is built, not when it starts, so the
start-up warnings (unknown config keys, a missing password file) are in it too.
"""

from __future__ import annotations

import os
import socket
from typing import IO, Any, cast

from twisted.application.service import Service
from twisted.logger import (FileLogObserver, FilteringLogObserver, ILogObserver, LogEvent,
                            LogLevel, LogLevelFilterPredicate, Logger,
                            formatEventAsClassicLogText, formatTime, globalLogPublisher,
                            jsonFileLogObserver)
from twisted.python.logfile import LogFile
from zope.interface import implementer

__all__ = ["LogFileService", "NotifyReady", "levelled", "text_observer"]

log = Logger()


class ClassicLines:
    """``twisted.logger``'s classic text lines (``<time> [<namespace>#<level>] <text>``),
    made cheap enough for a line per module create: the time prefix is formatted
    once a second, and an event that carries its text already rendered
    (``log_text``, as the decision log's do) is not formatted again."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = "-"

    def _time(self, when: float | None) -> str:
        if when is None:
            return "-"
        second = int(when)
        if second != self._second:
            self._second, self._stamp = second, formatTime(second)
        return self._stamp

    def __call__(self, event: LogEvent) -> str | None:
        text = event.get("log_text")
        if text is None or "log_failure" in event or "log_system" in event:
            return formatEventAsClassicLogText(event, formatTime=self._time)
        level = event.get("log_level")
        system = f"{event.get('log_namespace', '-')}#{level.name if level else '-'}"
        return f"{self._time(event.get('log_time'))} [{system}] {text.replace(chr(10), chr(10) + chr(9))}\n"


def text_observer(out: IO[Any]) -> ILogObserver:
    """Classic text lines to ``out`` (see :class:`ClassicLines`)."""
    return FileLogObserver(out, ClassicLines())


@implementer(ILogObserver)
class _OnceEach:
    """Passes each event on once. The file is opened before twistd begins logging,
    and twistd then replays what it buffered meanwhile to every observer, ours
    included: those events are the same objects, so they are recognised and
    dropped. Once the service starts (after that replay) nothing is remembered."""

    def __init__(self, observer: ILogObserver) -> None:
        self._observer = observer
        self._early: list[LogEvent] | None = []

    def settled(self) -> None:
        self._early = None

    def __call__(self, event: LogEvent) -> None:
        early = self._early
        if early is not None:
            if any(seen is event for seen in early):
                return
            early.append(event)
        self._observer(event)


def levelled(observer: ILogObserver, level: LogLevel) -> ILogObserver:
    """``observer``, seeing only events at ``level`` and above."""
    return FilteringLogObserver(observer, [LogLevelFilterPredicate(defaultLogLevel=level)])


class LogFileService(Service):
    """Copies every log event to ``<log_dir>/orchestrator.log`` (rotated at 10 MB),
    as text or as one JSON object a line (``twisted.logger``'s own event format)."""

    def __init__(self, log_dir: str, debug: bool, log_format: str = "text") -> None:
        self.log_dir = log_dir
        self.level = LogLevel.debug if debug else LogLevel.info
        self.log_format = log_format
        self._file: LogFile | None = None
        self._observer: ILogObserver | None = None

    def open(self) -> None:
        """Start writing (once); raises OSError if the directory is not writable."""
        if self._observer is not None:
            return
        os.makedirs(self.log_dir, exist_ok=True)
        self._file = LogFile("orchestrator.log", self.log_dir,
                             rotateLength=10_000_000, maxRotatedFiles=5)
        out = cast(IO[Any], self._file)      # a LogFile is file-like
        writer = (jsonFileLogObserver(out, recordSeparator="") if self.log_format == "json"
                  else text_observer(out))
        self._observer = _OnceEach(levelled(writer, self.level))
        globalLogPublisher.addObserver(self._observer)

    def startService(self) -> None:
        super().startService()
        self.open()
        if isinstance(self._observer, _OnceEach):
            self._observer.settled()

    def stopService(self) -> None:
        super().stopService()
        if self._observer is not None:
            globalLogPublisher.removeObserver(self._observer)
        if self._file is not None:
            self._file.close()
        self._observer = self._file = None


class NotifyReady(Service):
    """Tells systemd (``Type=notify``) we are serving; added last, so it starts last."""

    def startService(self) -> None:
        super().startService()
        self._send(b"READY=1\nSTATUS=serving\n")

    def stopService(self) -> None:
        super().stopService()
        self._send(b"STOPPING=1\n")

    @staticmethod
    def _send(message: bytes) -> None:
        address: Any = os.environ.get("NOTIFY_SOCKET")
        if not address:
            return
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(address)
                s.sendall(message)
        except OSError:
            log.failure("sd_notify failed")
