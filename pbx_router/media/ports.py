"""The UDP ports the daemon listens on for externalMedia RTP: a configured range, handed out one
per listening call and given back when the call ends.

Loop-only (no locking): acquire/release never await, so they cannot be interrupted halfway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pbx_router.log import get_logger

__all__ = ["PortPool", "PortsExhausted"]

log = get_logger(__name__)


class PortsExhausted(RuntimeError):
    """Every port of the range is leased: too many concurrent listening calls for the range."""


class PortPool:
    def __init__(self, start: int, end: int) -> None:
        """Ports ``start``..``end`` inclusive."""
        if not 1 <= start <= end <= 65535:
            raise ValueError(f"bad port range {start}-{end}")
        self.start = start
        self.end = end
        self._leased: set[int] = set()
        # Hand ports out round-robin rather than lowest-first: a port just given back may still
        # receive stragglers from the previous call's RTP, so it should rest as long as possible.
        self._cursor = start

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def in_use(self) -> int:
        return len(self._leased)

    @property
    def available(self) -> int:
        return self.size - len(self._leased)

    def is_leased(self, port: int) -> bool:
        return port in self._leased

    def acquire(self) -> int:
        if len(self._leased) >= self.size:
            raise PortsExhausted(f"all {self.size} ports {self.start}-{self.end} are in use")
        for _ in range(self.size):
            port = self._cursor
            self._cursor = self.start if port >= self.end else port + 1
            if port not in self._leased:
                self._leased.add(port)
                return port
        raise AssertionError("unreachable: a free port was counted but not found")

    def release(self, port: int) -> None:
        """Give ``port`` back. Releasing a port that is not leased is logged and ignored, so a
        cleanup path that runs twice cannot crash the call (but it is a bug to fix)."""
        if not self.start <= port <= self.end:
            raise ValueError(f"port {port} is outside {self.start}-{self.end}")
        if port not in self._leased:
            log.warning("port_release_unleased", port=port)
            return
        self._leased.discard(port)

    @contextmanager
    def lease(self) -> Iterator[int]:
        """``with pool.lease() as port:`` the port is released however the block ends
        (exception or cancellation included)."""
        port = self.acquire()
        try:
            yield port
        finally:
            self.release(port)
