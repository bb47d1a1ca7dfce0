"""Logs to ``log_dir`` next to twistd's own stdout log, and the systemd ready signal.

The file is opened when the service tree is built, not when it starts, so the
start-up warnings (unknown config keys, a missing password file) are in it too.
"""

from __future__ import annotations

import os
import socket
from typing import IO, Any, cast

from twisted.application.service import Service
from twisted.logger import (FilteringLogObserver, ILogObserver, LogLevel,
                            LogLevelFilterPredicate, Logger, globalLogPublisher,
                            jsonFileLogObserver, textFileLogObserver)
from twisted.python.logfile import LogFile

__all__ = ["LogFileService", "NotifyReady", "levelled"]

log = Logger()


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
                  else textFileLogObserver(out))
        self._observer = levelled(writer, self.level)
        globalLogPublisher.addObserver(self._observer)

    def startService(self) -> None:
        super().startService()
        self.open()

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
