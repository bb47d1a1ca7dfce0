"""Logs to ``log_dir`` next to twistd's own stdout log, and the systemd ready signal."""

from __future__ import annotations

import os
import socket
from typing import IO, Any, cast

from twisted.application.service import Service
from twisted.logger import (FilteringLogObserver, ILogObserver, LogLevel,
                            LogLevelFilterPredicate, Logger, globalLogPublisher,
                            textFileLogObserver)
from twisted.python.logfile import LogFile

__all__ = ["LogFileService", "NotifyReady"]

log = Logger()


class LogFileService(Service):
    """Copies every log event to ``<log_dir>/orchestrator.log`` (rotated at 10 MB)."""

    def __init__(self, log_dir: str, debug: bool) -> None:
        self.log_dir = log_dir
        self.level = LogLevel.debug if debug else LogLevel.info
        self._file: LogFile | None = None
        self._observer: ILogObserver | None = None

    def startService(self) -> None:
        super().startService()
        os.makedirs(self.log_dir, exist_ok=True)
        self._file = LogFile("orchestrator.log", self.log_dir,
                             rotateLength=10_000_000, maxRotatedFiles=5)
        self._observer = FilteringLogObserver(
            textFileLogObserver(cast(IO[Any], self._file)),   # a LogFile is file-like
            [LogLevelFilterPredicate(defaultLogLevel=self.level)])
        globalLogPublisher.addObserver(self._observer)

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
