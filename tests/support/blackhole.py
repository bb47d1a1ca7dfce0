"""A loopback address whose TCP connects hang (a full accept queue), for connect timeouts."""

from __future__ import annotations

import socket


class BlackHole:
    """Listen with a backlog of 0 and fill it: the kernel drops further SYNs, so a
    connect waits for its own timeout, as to an unreachable host, without leaving
    the machine."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._fillers = []
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._fillers.append(s)

    def close(self) -> None:
        for s in self._fillers:
            s.close()
        self._listener.close()
