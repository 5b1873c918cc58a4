"""``OverrideBackend``: the part of an :class:`~pbx_router.admin.backend.AdminBackend` that is the
same for the daemon and for tests: staff overrides (checked against the names in force, recorded
first, applied through ``on_change``), agent presence, and rules reloads.

What is *not* here are the views (calls, queues, agents, status, readiness, callbacks): the daemon
(``app.DaemonBackend``) serves its live state, ``InMemoryBackend`` serves plain fakes. Both
subclass this one; neither subclasses the other.
"""

from __future__ import annotations

import abc
import datetime as dt
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from pbx_router.admin.backend import Clock, utc_now
from pbx_router.admin.errors import InvalidRequestError, NotFoundError, RejectedError, UnavailableError
from pbx_router.log import get_logger
from pbx_router.queues.model import PRESENCES
from pbx_router.queues.overrides import Override, OverrideSet

log = get_logger("pbx_router.admin")

_QUEUE_KINDS = frozenset({"close_queue", "open_queue", "redirect_queue"})

RulesReload = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]


class OverrideRecorder(Protocol):
    """Where overrides are recorded (``pbx_router.store.overrides.OverrideRepository`` fits)."""

    async def save(self, override: Override) -> bool: ...

    async def cancel(self, override_id: str, author: str, reason: str, at: dt.datetime) -> bool: ...

    async def active(self, now: dt.datetime) -> list[Override]: ...


@dataclass(frozen=True, slots=True)
class Names:
    """What an override may name. ``None`` for queues/targets/intents: any name is accepted (a
    backend that does not know); an empty collection: nothing is. ``agents``: endpoint -> display
    name; ``agent_ids``: the rules file's agent keys (``agent1``) -> endpoint, so staff may use
    either."""

    queues: tuple[str, ...] | None = None
    targets: frozenset[str] | None = None
    intents: frozenset[str] | None = None
    agents: Mapping[str, str] = field(default_factory=dict)
    agent_ids: Mapping[str, str] = field(default_factory=dict)

    def endpoint(self, name: str) -> str | None:
        """The agent endpoint ``name`` stands for (an endpoint or an agent key), None if no agent."""
        if name in self.agents:
            return name
        return self.agent_ids.get(name)


def _listing(names: Iterable[str]) -> str:
    shown = sorted(names) if not isinstance(names, tuple) else list(names)
    return ", ".join(shown) if shown else "none configured"


class OverrideBackend(abc.ABC):
    """Owns the active overrides. Subclasses provide :meth:`names` (what may be named, read at
    each request, so a rules reload is seen at once) and the views."""

    def __init__(
        self,
        *,
        recorder: OverrideRecorder | None = None,
        clock: Clock = utc_now,
        on_change: Callable[[OverrideSet], object] | None = None,
        rules_reload: RulesReload | None = None,
    ) -> None:
        self.recorder = recorder
        self.clock = clock
        self.on_change = on_change
        self.rules_reload = rules_reload
        self._overrides = OverrideSet()

    @abc.abstractmethod
    def names(self) -> Names:
        """Queues, agents, targets and intents in force now."""

    @abc.abstractmethod
    def agents_view(self) -> list[dict[str, Any]]: ...

    @property
    def overrides(self) -> OverrideSet:
        return self._overrides

    def overrides_view(self) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self._overrides.active(self.clock())]

    async def restore(self) -> list[Override]:
        """Load the recorder's active overrides (a restarted daemon); returns what was loaded.
        Not checked against today's names: staff set them, and they expire on their own."""
        if self.recorder is None:
            return []
        loaded = await self.recorder.active(self.clock())
        current = self._overrides
        for override in loaded:
            if all(o.id != override.id for o in current.items):
                current = current.add(override)
        self._set(current)
        return loaded

    # -- changes -----------------------------------------------------------------------------

    async def add_override(self, override: Override) -> Override:
        override = self._checked(override)
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
        resolved = self.names().endpoint(endpoint)
        if resolved is None:
            raise NotFoundError(f"no agent {endpoint!r}")
        if presence not in PRESENCES:
            raise InvalidRequestError(f"presence must be one of {', '.join(PRESENCES)}")
        await self.add_override(Override(
            kind="agent_presence", scope=resolved, target=presence, author=author, reason=reason,
            created_at=self.clock(), expires_at=expires_at,
        ))
        view = next((a for a in self.agents_view() if a.get("endpoint") == resolved), None)
        return view if view is not None else {"endpoint": resolved, "presence": presence, "presence_override": True}

    async def reload_rules(self) -> dict[str, Any]:
        if self.rules_reload is None:
            raise UnavailableError("no rules file is configured")
        result = self.rules_reload()
        status = dict(await result) if inspect.isawaitable(result) else dict(result)
        self._reloaded(status)
        return status

    def _reloaded(self, status: Mapping[str, Any]) -> None:  # noqa: B027 - optional hook, no-op by default
        """Hook: a reload finished with ``status``."""

    # -- internals ---------------------------------------------------------------------------

    def _checked(self, override: Override) -> Override:
        """``override`` if every name in it exists (an agent key becomes its endpoint); else a
        422 that lists what does exist, so a typo cannot silently route nothing."""
        names = self.names()
        kind = override.kind
        if kind in _QUEUE_KINDS and names.queues is not None and override.scope not in (*names.queues, "all"):
            raise RejectedError(f"no queue {override.scope!r} (queues: {_listing(names.queues)})")
        if kind == "redirect_intent" and names.intents is not None and override.scope not in (*names.intents, "all"):
            raise RejectedError(f"no intent {override.scope!r} (intents: {_listing(names.intents)})")
        if kind == "agent_presence":
            endpoint = names.endpoint(override.scope)
            if endpoint is None:
                raise RejectedError(f"no agent {override.scope!r}")
            if endpoint != override.scope:
                override = replace(override, scope=endpoint)
        elif (names.targets is not None and override.target is not None
              and override.target not in names.targets):
            raise RejectedError(f"no target {override.target!r} in the rules file "
                                f"(targets: {_listing(names.targets)})")
        return override

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


__all__ = ["Names", "OverrideBackend", "OverrideRecorder", "RulesReload"]
