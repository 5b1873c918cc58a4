"""Daemon-owned queues: configuration, policy (pure), statistics and staff overrides.

The call layer drives :class:`~pbx_router.queues.policy.Dispatcher` and performs the actions it
returns; nothing here touches ARI, the database or the clock.
"""

from pbx_router.queues.actions import (
    Action,
    Announce,
    Bridge,
    CancelRings,
    Overflow,
    Queued,
    RingAgents,
)
from pbx_router.queues.model import (
    AgentConfig,
    OverflowSpec,
    QueueConfig,
    QueuesConfigError,
    QueuesSection,
    parse_queues_section,
)
from pbx_router.queues.overrides import Override, OverrideSet, QueueDirective
from pbx_router.queues.policy import DEFAULT_PRIORITY, Dispatcher
from pbx_router.queues.stats import QueueSnapshot

__all__ = [
    "DEFAULT_PRIORITY", "Action", "AgentConfig", "Announce", "Bridge", "CancelRings", "Dispatcher", "Overflow",
    "OverflowSpec", "Override", "OverrideSet", "QueueConfig", "QueueDirective", "QueueSnapshot", "Queued",
    "QueuesConfigError", "QueuesSection", "RingAgents", "parse_queues_section",
]
