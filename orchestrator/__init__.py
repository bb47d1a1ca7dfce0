"""The SilverLine orchestrator (see README.md; the wire protocol is docs/protocol.md)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("silverline-orchestrator")
except PackageNotFoundError:        # running from a checkout that was never installed
    __version__ = "unknown"
