"""``InMemoryBackend``: an :class:`AdminBackend` for tests and tools, with plain fake views.

The overrides, their recording and checks are :class:`~pbx_router.admin.overrides.OverrideBackend`'s,
shared with the daemon's backend (``app.DaemonBackend``); this class only adds views built from
``queues``/``agents``/``calls`` and attributes a test sets. ``on_change`` is called with the new
``OverrideSet`` after every change, so a dispatcher can apply it in its very next step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pbx_router.admin.backend import Clock, utc_now
from pbx_router.admin.errors import ConflictError, NotFoundError
from pbx_router.admin.overrides import Names, OverrideBackend, OverrideRecorder, RulesReload
from pbx_router.queues.overrides import OverrideSet
from pbx_router.queues.stats import AgentCounts, QueueCounters, QueueSnapshot


class InMemoryBackend(OverrideBackend):
    """Holds the overrides; the views are fakes built from ``queues``/``agents``/``calls``.

    ``queues``: known queue names (None: any name is accepted). ``agents``: endpoint -> display
    name (presence requests for other endpoints are 404). ``targets``/``intents``: rules-file
    target and intent names an override may name (None: any). ``recorder``: when given, every
    change is recorded first and refused (``UnavailableError``) if recording fails.
    """

    def __init__(
        self,
        *,
        queues: Iterable[str] | None = None,
        agents: Mapping[str, str] | Iterable[str] = (),
        targets: Iterable[str] | None = None,
        intents: Iterable[str] | None = None,
        recorder: OverrideRecorder | None = None,
        clock: Clock = utc_now,
        on_change: Callable[[OverrideSet], object] | None = None,
        rules_reload: RulesReload | None = None,
    ) -> None:
        super().__init__(recorder=recorder, clock=clock, on_change=on_change, rules_reload=rules_reload)
        self.queues: list[str] | None = None if queues is None else list(queues)
        self.agents: dict[str, str] = dict(agents) if isinstance(agents, Mapping) else {a: a for a in agents}
        self.targets: frozenset[str] | None = None if targets is None else frozenset(targets)
        self.intents: frozenset[str] | None = None if intents is None else frozenset(intents)
        self.base_presence: dict[str, str] = dict.fromkeys(self.agents, "logged_in")
        self.calls: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.ari: dict[str, Any] = {"connected": True}
        self.recorder_stats: dict[str, Any] = {}
        self.rules_status: dict[str, Any] | None = None
        self.ready = True
        self.database_ok = True  # what readiness() reports for the database

    def names(self) -> Names:
        return Names(queues=None if self.queues is None else tuple(self.queues), targets=self.targets,
                     intents=self.intents, agents=self.agents)

    def _reloaded(self, status: Mapping[str, Any]) -> None:
        self.rules_status = dict(status)

    # -- views -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "ari": dict(self.ari),
            "active_calls": len(self.calls),
            "rules": self.rules_status,
            "recorder": dict(self.recorder_stats),
            "overrides_active": len(self._overrides.active(self.clock())),
        }

    def calls_view(self) -> list[dict[str, Any]]:
        return [dict(c) for c in self.calls]

    def queues_view(self) -> list[dict[str, Any]]:
        now = self.clock()
        presence = self._presences(now)
        out = []
        for name in self.queues or []:
            directive = self._overrides.queue_directive(name, now)
            counts = AgentCounts(
                available=sum(1 for p in presence.values() if p == "logged_in"),
                paused=sum(1 for p in presence.values() if p == "paused"),
                logged_out=sum(1 for p in presence.values() if p == "logged_out"),
            )
            snap = QueueSnapshot(name, 0, 0.0, counts, QueueCounters(), 30.0, state=directive.state)
            out.append(snap.to_dict())
        return out

    def agents_view(self) -> list[dict[str, Any]]:
        now = self.clock()
        forced = self._overrides.presences(now)
        return [self._agent(endpoint, forced) for endpoint in self.agents]

    async def readiness(self) -> dict[str, Any]:
        checks = {"ari": {"ok": bool(self.ready and self.ari.get("connected", False))},
                  "database": {"ok": self.database_ok}}
        not_ready = [f"{name}: not ready" for name, check in checks.items() if not check["ok"]]
        return {"ready": not not_ready, "not_ready": not_ready, "checks": checks}

    async def callbacks_view(self, limit: int, *, include_done: bool = False) -> list[dict[str, Any]]:
        rows = [c for c in self.callbacks if include_done or c.get("status", "open") != "done"]
        return [dict(c) for c in rows[:limit]]

    async def claim_callback(self, callback_id: int, author: str) -> dict[str, Any]:
        row = self._callback(callback_id)
        if row.get("status") == "done" or row.get("claimed_by") not in (None, author):
            raise ConflictError(f"callback {callback_id} is {row.get('status')} by someone else")
        row.update(status="claimed", claimed_by=author, claimed_at=self.clock().isoformat())
        return dict(row)

    async def complete_callback(self, callback_id: int, author: str, note: str | None) -> dict[str, Any]:
        row = self._callback(callback_id)
        if row.get("status") == "done":
            raise ConflictError(f"callback {callback_id} is already done")
        row.update(status="done", done_by=author, done_at=self.clock().isoformat(), note=note)
        return dict(row)

    def _callback(self, callback_id: int) -> dict[str, Any]:
        for row in self.callbacks:
            if row.get("id") == callback_id:
                return row
        raise NotFoundError(f"no callback request {callback_id}")

    def _presences(self, now: dt.datetime) -> dict[str, str]:
        forced = self._overrides.presences(now)
        return {e: forced.get(e, self.base_presence[e]) for e in self.agents}

    def _agent(self, endpoint: str, forced: Mapping[str, str]) -> dict[str, Any]:
        presence = forced.get(endpoint, self.base_presence[endpoint])
        return {
            "endpoint": endpoint,
            "name": self.agents[endpoint],
            "presence": presence,
            "presence_override": endpoint in forced,
            "status": "available" if presence == "logged_in" else presence,
        }
