"""What the dispatcher asks the call layer to do. Plain, frozen data; each is safe to perform once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pbx_router.queues.model import OverflowSpec

OverflowReason = Literal["max_wait", "max_len", "closed", "redirected", "no_agents", "unknown_queue"]



@dataclass(frozen=True, slots=True)
class Queued:
    """Put the caller in the queue's holding bridge (get-or-create ``bridge_id``) with music."""

    caller_id: str
    queue: str
    bridge_id: str
    moh_class: str
    position: int


@dataclass(frozen=True, slots=True)
class RingAgents:
    """Originate one leg per agent; report each leg's fate back. Legs ring at most ``timeout_s``."""

    caller_id: str
    queue: str
    agents: tuple[str, ...]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class CancelRings:
    """Hang up these agent legs of ``caller_id`` (never ``except_agent``, who is being bridged)."""

    caller_id: str
    agents: tuple[str, ...]
    reason: str
    except_agent: str | None = None


@dataclass(frozen=True, slots=True)
class Bridge:
    """The agent answered: move caller and agent into a mixing bridge. Do this first: it is timed."""

    caller_id: str
    agent: str
    queue: str
    waited_s: float


@dataclass(frozen=True, slots=True)
class Announce:
    """Play ``media`` (in order, one ARI play) to a waiting caller."""

    caller_id: str
    queue: str
    position: int
    expected_wait_s: float | None
    media: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Overflow:
    """Take the caller out of the queue (and its bridge) and send them to ``target``.

    ``target`` None means "route this caller through the rules again" (e.g. a queue closed by
    staff with no target). ``priority`` and ``joined_at`` let a queue target keep the caller's place.
    """

    caller_id: str
    queue: str
    target: OverflowSpec | None
    reason: OverflowReason
    priority: int
    joined_at: float


Action = Queued | RingAgents | CancelRings | Bridge | Announce | Overflow

