"""The callers of one queue, in service order, and the handle times that drive wait estimates."""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pbx_router.queues.model import QueueConfig

HANDLE_SAMPLES = 20  # recent calls averaged for the wait estimate



@dataclass(frozen=True, slots=True)
class QueuedCaller:
    caller_id: str
    queue: str
    priority: int
    joined_at: float
    seq: int  # arrival tie-break within equal priority and equal joined_at
    skills: Mapping[str, int] = field(default_factory=dict)

    @property
    def order_key(self) -> tuple[int, float, int]:
        return (self.priority, self.joined_at, self.seq)

    def to_dict(self) -> dict[str, Any]:
        return {
            "caller_id": self.caller_id,
            "priority": self.priority,
            "joined_at": self.joined_at,
            "seq": self.seq,
            "skills": dict(self.skills),
        }


class QueueState:
    """The callers of one queue, ordered urgent-first then by arrival, plus its handle times."""

    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self._order: list[QueuedCaller] = []
        self._by_id: dict[str, QueuedCaller] = {}
        self.handle_times: deque[float] = deque(maxlen=HANDLE_SAMPLES)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, caller_id: object) -> bool:
        return caller_id in self._by_id

    def add(self, caller: QueuedCaller) -> int:
        if caller.caller_id in self._by_id:
            raise ValueError(f"caller {caller.caller_id} already waits in {self.config.name}")
        bisect.insort(self._order, caller, key=lambda c: c.order_key)
        self._by_id[caller.caller_id] = caller
        return self.position(caller.caller_id)

    def remove(self, caller_id: str) -> QueuedCaller | None:
        caller = self._by_id.pop(caller_id, None)
        if caller is not None:
            self._order.remove(caller)
        return caller

    def get(self, caller_id: str) -> QueuedCaller | None:
        return self._by_id.get(caller_id)

    def ordered(self) -> list[QueuedCaller]:
        return list(self._order)

    def position(self, caller_id: str) -> int:
        """1-based; raises KeyError for a caller not in this queue."""
        caller = self._by_id[caller_id]
        return self._order.index(caller) + 1

    def longest_wait(self, now: float) -> float:
        return max((now - c.joined_at for c in self._order), default=0.0)

    def is_full(self) -> bool:
        return self.config.max_len is not None and len(self._order) >= self.config.max_len

    def record_handle(self, seconds: float) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            self.handle_times.append(seconds)

    def average_handle(self) -> float:
        if not self.handle_times:
            return self.config.default_handle_s
        return sum(self.handle_times) / len(self.handle_times)

    def expected_wait(self, position: int, staffed: int, free: int) -> float | None:
        """Seconds until the caller at ``position`` is answered, or None if nobody staffs the queue.

        Each staffed agent clears about one caller per average handle time (talk + wrap-up of
        recent calls); free agents take the first callers at once.
        """
        if staffed <= 0:
            return None
        ahead = max(0, position - free)
        return ahead * self.average_handle() / staffed

    def to_dict(self) -> dict[str, Any]:
        return {
            "callers": [c.to_dict() for c in self._order],
            "handle_times": list(self.handle_times),
        }

