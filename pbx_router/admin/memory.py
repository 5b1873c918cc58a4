"""``InMemoryBackend``: an :class:`AdminBackend` over an ``OverrideSet`` and plain fake views.

Tests and tools use it as is; the daemon can compose it (it owns the overrides, their recording
and their expiry) and feed real views in by subclassing ``calls_view``/``queues_view``/... or by
setting the plain attributes. ``on_change`` is called with the new ``OverrideSet`` after every
change, so a dispatcher can apply it in its very next step.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from pbx_router.admin.backend import Clock, utc_now
from pbx_router.admin.errors import ConflictError, InvalidRequestError, NotFoundError, UnavailableError
from pbx_router.log import get_logger
from pbx_router.queues.model import PRESENCES
from pbx_router.queues.overrides import Override, OverrideSet
from pbx_router.queues.stats import AgentCounts, QueueCounters, QueueSnapshot

log = get_logger(__name__)

class OverrideRecorder(Protocol):
    """Where overrides are recorded (``pbx_router.store.overrides.OverrideRepository`` fits)."""

    async def save(self, override: Override) -> bool: ...

    async def cancel(self, override_id: str, author: str, reason: str, at: dt.datetime) -> bool: ...

    async def active(self, now: dt.datetime) -> list[Override]: ...


class InMemoryBackend:
    """Holds the overrides; the views are fakes built from ``queues``/``agents``/``calls``.

    ``queues``: known queue names (None: any name is accepted). ``agents``: endpoint -> display
    name (presence requests for other endpoints are 404). ``targets``: rules-file target names a
    redirect may name (None: any). ``recorder``: when given, every change is recorded first and
    refused (``UnavailableError``) if recording fails.
    """

    def __init__(
        self,
        *,
        queues: Iterable[str] | None = None,
        agents: Mapping[str, str] | Iterable[str] = (),
        targets: Iterable[str] | None = None,
        recorder: OverrideRecorder | None = None,
        clock: Clock = utc_now,
        on_change: Callable[[OverrideSet], object] | None = None,
        rules_reload: Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.queues: list[str] | None = None if queues is None else list(queues)
        self.agents: dict[str, str] = dict(agents) if isinstance(agents, Mapping) else {a: a for a in agents}
        self.targets: frozenset[str] | None = None if targets is None else frozenset(targets)
        self.recorder = recorder
        self.clock = clock
        self.on_change = on_change
        self.rules_reload = rules_reload
        self.base_presence: dict[str, str] = dict.fromkeys(self.agents, "logged_in")
        self.calls: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.ari: dict[str, Any] = {"connected": True}
        self.recorder_stats: dict[str, Any] = {}
        self.rules_status: dict[str, Any] | None = None
        self.ready = True
        self.database_ok = True  # what readiness() reports for the database
        self._overrides = OverrideSet()

    @property
    def overrides(self) -> OverrideSet:
        return self._overrides

    async def restore(self) -> list[Override]:
        """Load the recorder's active overrides (a restarted daemon); returns what was loaded."""
        if self.recorder is None:
            return []
        loaded = await self.recorder.active(self.clock())
        current = self._overrides
        for override in loaded:
            if all(o.id != override.id for o in current.items):
                current = current.add(override)
        self._set(current)
        return loaded

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

    def overrides_view(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self._overrides.active(self.clock())]

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

    # -- changes -----------------------------------------------------------------------------

    async def add_override(self, override: Override) -> Override:
        self._check_names(override)
        if any(o.id == override.id for o in self._overrides.items):
            raise InvalidRequestError(f"override {override.id} already exists")
        if self.recorder is not None:
            await self._record("save", self.recorder.save(override))
        # Re-read after the await: another request may have changed the set meanwhile.
        self._set(self._overrides.prune(self.clock()).add(override))
        log.info("override_added", override_id=override.id, kind=override.kind, scope=override.scope,
                 author=override.author, ttl_s=round((override.expires_at - override.created_at).total_seconds()))
        log.debug("override_reason", override_id=override.id, reason=override.reason)
        return override

    async def cancel_override(self, override_id: str, author: str, reason: str) -> bool:
        now = self.clock()
        if all(o.id != override_id for o in self._overrides.active(now)):
            return False
        if self.recorder is not None:
            await self._record("cancel", self.recorder.cancel(override_id, author, reason, now))
        try:
            self._set(self._overrides.cancel(override_id, now))
        except KeyError:  # pruned while the record was written: it is over either way
            return False
        log.info("override_cancelled", override_id=override_id, author=author)
        log.debug("override_cancel_reason", override_id=override_id, reason=reason)
        return True

    async def set_presence(
        self, endpoint: str, presence: str, author: str, reason: str, expires_at: dt.datetime
    ) -> dict[str, Any]:
        if endpoint not in self.agents:
            raise NotFoundError(f"no agent {endpoint!r}")
        if presence not in PRESENCES:
            raise InvalidRequestError(f"presence must be one of {', '.join(PRESENCES)}")
        now = self.clock()
        await self.add_override(Override(
            kind="agent_presence", scope=endpoint, target=presence, author=author, reason=reason,
            created_at=now, expires_at=expires_at,
        ))
        # Through agents_view, so a subclass serving the daemon's own view answers with it too.
        view = next((a for a in self.agents_view() if a.get("endpoint") == endpoint), None)
        return view if view is not None else self._agent(endpoint, self._overrides.presences(self.clock()))

    async def reload_rules(self) -> dict[str, Any]:
        if self.rules_reload is None:
            raise UnavailableError("no rules file is configured")
        result = self.rules_reload()
        status = dict(await result) if inspect.isawaitable(result) else dict(result)
        self.rules_status = status
        return status

    # -- internals ---------------------------------------------------------------------------

    def _check_names(self, override: Override) -> None:
        queue_kind = override.kind in ("close_queue", "open_queue", "redirect_queue")
        if queue_kind and self.queues is not None and override.scope not in (*self.queues, "all"):
            raise InvalidRequestError(f"no queue {override.scope!r} (queues: {', '.join(self.queues)})")
        if override.kind == "agent_presence" and override.scope not in self.agents:
            raise InvalidRequestError(f"no agent {override.scope!r}")
        if (self.targets is not None and override.target is not None and override.kind != "agent_presence"
                and override.target not in self.targets):
            raise InvalidRequestError(f"no target {override.target!r} in the rules file")

    async def _record(self, action: str, write: Awaitable[object]) -> None:
        try:
            await write
        except Exception as exc:  # any failure to record refuses the change
            log.error("override_record_failed", action=action, error=f"{type(exc).__name__}: {exc}")
            raise UnavailableError(
                f"the change could not be recorded ({type(exc).__name__}); nothing was changed"
            ) from exc

    def _set(self, overrides: OverrideSet) -> None:
        self._overrides = overrides
        if self.on_change is not None:
            self.on_change(overrides)

