"""The seam between the admin API and the daemon: what the API reads and asks for.

The daemon (``app.py``) implements :class:`AdminBackend` over its live state; tests and tools use
:class:`pbx_router.admin.memory.InMemoryBackend`. Both inherit the overrides, their checks and their
recording from :class:`pbx_router.admin.overrides.OverrideBackend`. Views return plain JSON-ready dicts, so the
HTTP layer never needs to know the daemon's types. Views are synchronous on purpose: they read
state the event loop already holds and must answer instantly even when the daemon is busy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from pbx_router.queues.overrides import Override

Clock = Callable[[], dt.datetime]  # timezone-aware "now"; tests pass a fake one


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@runtime_checkable
class AdminBackend(Protocol):
    def status(self) -> dict[str, Any]:
        """Readiness and health: ``ready`` (bool), ARI link state, active calls, the rules'
        reload status, recorder stats. ``ready`` is also shown, without a token, at /health."""
        ...

    def calls_view(self) -> list[dict[str, Any]]:
        """Live calls (ids, states, queue positions; never caller numbers or transcripts)."""
        ...

    def queues_view(self) -> list[dict[str, Any]]:
        """One ``QueueSnapshot.to_dict()`` per queue."""
        ...

    async def readiness(self) -> dict[str, Any]:
        """May calls be handled right now? ``{"ready": bool, "not_ready": [one line per failing
        check], "checks": {"ari": {"ok": ...}, "database": {"ok": ...}}}``. Served without a
        token at /readyz, so it carries states, never addresses, numbers or error texts. Must
        answer within a couple of seconds even when a dependency hangs."""
        ...

    async def callbacks_view(self, limit: int, *, include_done: bool = False) -> list[dict[str, Any]]:
        """Callback requests callers left (newest first): id, number (None and ``withheld``
        True when the caller withheld it), reason, intent, when, and who claimed or completed
        it. Staff need the number to call back, so this (token-protected, loopback) view
        carries it. Done requests only with ``include_done``."""
        ...

    async def claim_callback(self, callback_id: int, author: str) -> dict[str, Any]:
        """``author`` is calling this caller back: the request's view. ``NotFoundError`` for no
        such request, ``ConflictError`` when someone else claimed it or it is done."""
        ...

    async def complete_callback(self, callback_id: int, author: str, note: str | None) -> dict[str, Any]:
        """The caller was called back (claimed or not): the request's view. ``ConflictError``
        when it was already done, ``NotFoundError`` for no such request."""
        ...

    def agents_view(self) -> list[dict[str, Any]]:
        """One dict per agent, with at least ``endpoint`` and ``presence``."""
        ...

    def overrides_view(self) -> list[dict[str, Any]]:
        """Active overrides (``Override.to_dict()``), newest first; expired ones are left out."""
        ...

    async def add_override(self, override: Override) -> Override:
        """Record and apply ``override`` (the next decision sees it). Raise
        ``RejectedError`` (422) when it names an unknown queue/intent/agent/target and
        ``UnavailableError`` when it cannot be recorded (it is then not applied either)."""
        ...

    async def cancel_override(self, override_id: str, author: str, reason: str) -> bool:
        """End an active override now, recording who and why. False: no such active override."""
        ...

    async def set_presence(
        self, endpoint: str, presence: str, author: str, reason: str, expires_at: dt.datetime
    ) -> dict[str, Any]:
        """Set an agent's presence until ``expires_at`` (an ``agent_presence`` override); return
        that agent's view. Raise ``NotFoundError`` for an endpoint that is not an agent."""
        ...

    async def reload_rules(self) -> dict[str, Any]:
        """Re-read the rules file; return ``ReloadStatus.to_dict()`` (``ok`` False: the file was
        rejected and the old rules stay). Raise ``UnavailableError`` if no rules file is used."""
        ...
