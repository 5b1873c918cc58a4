"""What every part of the daemon's queue service shares (``calls/queueing.py`` has the whole
story): ids and the ``PBXR_QUEUE`` place, the member record, the counters, and the service's state
with the few steps all parts take (hand actions to callers, hang up a leg, spawn a task).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pbx_router.ari import AriClient, AriError
from pbx_router.ari import events as ev
from pbx_router.calls.call import Call
from pbx_router.calls.flow import ID_PREFIX, CallFlow
from pbx_router.log import get_logger
from pbx_router.queues import (
    Action,
    Dispatcher,
    OverflowSpec,
    OverrideSet,
    QueuesSection,
)

if TYPE_CHECKING:
    pass

log = get_logger("pbx_router.calls.queueing")

QUEUE_VAR = "PBXR_QUEUE"
HOLDING_PREFIX = "queue-"
LEG_TAG = "q"
#: Wakes a caller's task when actions were queued for it (the actions live on the member).
QUEUE_WAKE = ev.Event(type="PbxRouterQueueWake")
# The clock task re-checks at least this often even when nothing is due (cheap, and a safety net).
MAX_IDLE_S = 1.0
ADOPTION_WAIT_S = 5.0
LATENCY_SAMPLES = 100_000

LegOutcome = Literal["busy", "unreachable", "congestion", "rejected", "error", "no_answer"]
# Q.850 causes of a leg that ended before answering -> what the dispatcher makes of it.
_CAUSES: dict[int, LegOutcome] = {
    17: "busy", 18: "no_answer", 19: "no_answer", 16: "no_answer", 21: "rejected",
    1: "unreachable", 3: "unreachable", 20: "unreachable", 27: "unreachable", 31: "no_answer",
    34: "congestion", 38: "congestion", 41: "congestion", 42: "congestion",
}


def holding_bridge_id(queue: str) -> str:
    return f"{HOLDING_PREFIX}{queue}"


def agent_leg_id(caller_channel_id: str) -> str:
    """Unique for ever (Asterisk refuses a reused channel id), owned by the caller's call."""
    return f"{ID_PREFIX}{LEG_TAG}{uuid.uuid4().hex[:10]}-{caller_channel_id}"


def is_agent_leg(channel_id: str) -> bool:
    return channel_id.startswith(f"{ID_PREFIX}{LEG_TAG}")


def format_place(queue: str, priority: int, joined_at: float, urgency: str = "routine") -> str:
    place = f"{queue},{priority},{joined_at:.3f}"
    # The urgency survives a daemon restart too: an adopted emergency caller stays one.
    return place if urgency == "routine" else f"{place},{urgency}"


def parse_place(value: str) -> tuple[str, int, float] | None:
    """``PBXR_QUEUE`` back into (queue, priority, joined_at); None when malformed."""
    parts = value.split(",")
    if len(parts) not in (3, 4) or not parts[0]:
        return None
    try:
        joined_at = float(parts[2])
        priority = int(parts[1])
    except ValueError:
        return None
    return (parts[0], priority, joined_at) if math.isfinite(joined_at) else None


def urgency_of_place(value: str) -> str:
    parts = value.split(",")
    return parts[3] if len(parts) == 4 and parts[3] in ("urgent", "emergency") else "routine"


@dataclass(eq=False)
class Member:
    """One caller known to the queues (waiting, being rung, or talking)."""

    caller_id: str
    queue: str
    priority: int
    joined_at: float
    call: Call | None = None
    flow: CallFlow | None = None
    state: Literal["waiting", "talking", "done"] = "waiting"
    pending: deque[Action] = field(default_factory=deque)
    legs: dict[str, str] = field(default_factory=dict)  # leg channel id -> agent endpoint
    holding: str | None = None  # holding bridge the caller is in
    mixing_ready: bool = False
    announcement: str | None = None  # playback id of the announcement playing now
    t_joined: float = field(default_factory=time.perf_counter)
    t_answer: float = 0.0  # perf_counter when the answering leg's StasisStart was taken in
    rung: bool = False
    urgency: str = "routine"

    def leg_of(self, agent: str) -> str | None:
        return next((leg for leg, a in self.legs.items() if a == agent), None)


@dataclass
class QueueServiceStats:
    dropped_actions: int = 0  # actions for callers no longer here
    late_legs_hung_up: int = 0
    stale_legs_hung_up: int = 0
    restored: int = 0
    ari_errors: int = 0
    decision_to_ringing_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    answer_to_bridged_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))


@dataclass(frozen=True, slots=True)
class Overflowed:
    """The queue let the caller go unanswered; the caller is out of the holding bridge, no leg
    rings, and the target executor decides where they go (``spec``: the queue's own overflow,
    None when there is none)."""

    queue: str
    reason: str
    spec: OverflowSpec | None
    priority: int
    joined_at: float


class _Requeue(Exception):
    """The caller goes back in line in the same queue (a failed bridge), keeping their place."""

    def __init__(self, queue: str, priority: int, joined_at: float) -> None:
        super().__init__(queue)
        self.queue, self.priority, self.joined_at = queue, priority, joined_at


class QueueState:
    """The queue service's state (one per daemon); the service is this plus its parts."""

    def __init__(
        self,
        ari: AriClient,
        section: QueuesSection,
        *,
        overrides: OverrideSet | None = None,
        clock: Callable[[], float] = time.time,
        supervisor_calls: Callable[[], Mapping[str, Call]] = dict,
    ) -> None:
        self.ari = ari
        self.section = section
        self.clock = clock
        self._supervisor_calls = supervisor_calls
        self.dispatcher = Dispatcher(section, clock(), overrides)
        self.members: dict[str, Member] = {}
        self.stats = QueueServiceStats()
        self._changed = asyncio.Event()
        self._holding: dict[str, asyncio.Task[None]] = {}  # queue -> bridge ready (created + MOH)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconciled_at = -math.inf  # monotonic time of the last resync hook run
        self._reconciled = asyncio.Condition()

    def _push(self, actions: Iterable[Action], *, wake_clock: bool = True) -> None:
        """Hand each action to its caller's task."""
        for action in actions:
            member = self.members.get(action.caller_id)
            if member is None:
                self.stats.dropped_actions += 1
                continue
            member.pending.append(action)
            if member.call is not None:
                member.call.deliver(QUEUE_WAKE)
        if wake_clock:
            self._changed.set()

    def _leg_ended(self, m: Member, leg: str, outcome: LegOutcome) -> None:
        agent = m.legs.pop(leg, None)
        if m.call is not None:
            m.call.owned_channels.discard(leg)
        if agent is not None:
            self._push(self.dispatcher.agent_leg_failed(m.caller_id, agent, self.clock(), outcome))

    async def _hangup(self, channel_id: str) -> None:
        with contextlib.suppress(AriError):
            await self.ari.hangup(channel_id)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
