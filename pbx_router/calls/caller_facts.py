"""What the routing rules may know about a caller before the first word: their previous calls
(the call records) and whether the number belongs to a patient (the scheduling patient directory,
``patient_phones``). Read from the daemon's store when it is open; the conversation bounds the
whole lookup by ``Brain.facts_timeout`` and routes without facts when it runs out.

Nothing here is said to the caller: ``known_patient`` comes from the caller ID, before any
verification (see ``scheduling/patients.py``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Protocol
from zoneinfo import ZoneInfo

import asyncpg

from pbx_router.calls.conversation import CallerFacts
from pbx_router.log import get_logger
from pbx_router.scheduling.patients import PatientDirectory

log = get_logger("pbx_router.calls")

RECENT_WINDOW = dt.timedelta(days=30)


class CallHistory(Protocol):
    async def recent_times(self, number: str, since: dt.datetime | dt.timedelta,
                           limit: int = 100) -> list[dt.datetime]: ...


class FactsStore(Protocol):
    """What of ``pbx_router.store.Store`` the lookup reads."""

    @property
    def pool(self) -> asyncpg.Pool: ...

    @property
    def calls(self) -> CallHistory: ...


class StoreCallerFacts:
    """``Brain.caller_facts`` over the store. ``store`` returns the store if it is open (None:
    not yet, and a call must not wait for it to open); each fact that cannot be read is left
    unknown (``None`` / no previous calls) without losing the other."""

    def __init__(self, store: Callable[[], FactsStore | None], *, country_code: str = "1",
                 window: dt.timedelta = RECENT_WINDOW) -> None:
        self._store = store
        self._country_code = country_code
        self._window = window

    async def __call__(self, number: str, before: dt.datetime) -> CallerFacts:
        store = self._store()
        if store is None:
            return CallerFacts()
        # Only is_known_patient is used, which needs no time zone.
        directory = PatientDirectory(store.pool, ZoneInfo("UTC"), default_country_code=self._country_code)
        recent, known = await asyncio.gather(
            store.calls.recent_times(number, self._window), directory.is_known_patient(number),
            return_exceptions=True,
        )
        return CallerFacts(known_patient=self._fact("known_patient", known, bool),
                           recent_calls=self._recent(recent, before))

    @staticmethod
    def _fact(name: str, value: object, kind: type[bool]) -> bool | None:
        if isinstance(value, BaseException):
            if not isinstance(value, Exception):
                raise value  # a cancellation is not a missing fact
            log.warning("caller_fact_unavailable", fact=name, error=type(value).__name__)
            return None
        return kind(value)

    @staticmethod
    def _recent(value: Sequence[dt.datetime] | BaseException, before: dt.datetime) -> list[dt.datetime]:
        if isinstance(value, BaseException):
            if not isinstance(value, Exception):
                raise value
            log.warning("caller_fact_unavailable", fact="recent_calls", error=type(value).__name__)
            return []
        # The current call may already be recorded: it is not a "previous" call.
        return [t for t in value if t < before]


__all__ = ["FactsStore", "StoreCallerFacts"]
