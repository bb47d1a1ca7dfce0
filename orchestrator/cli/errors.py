"""What the command line reports as one line on stderr, with its exit status."""

from __future__ import annotations

__all__ = ["CliError", "REFUSED", "USAGE", "UNREACHABLE", "TIMEOUT"]

#: exit statuses (documented in the README)
REFUSED = 1        # the orchestrator answered with an error, or nothing was found
USAGE = 2          # bad command line or config
UNREACHABLE = 3    # the broker or the REST API cannot be reached
TIMEOUT = 4        # no reply in time


class CliError(Exception):
    def __init__(self, message: str, status: int = REFUSED) -> None:
        super().__init__(message)
        self.status = status
