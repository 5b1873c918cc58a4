"""The ``callbacks`` table: callback requests callers left, and staff claiming and completing them.

Rows are born from call records (``insert_from_calls``, run by ``upsert_calls`` in the recorder's
transaction): a record whose ``extra["callback_request"]`` is set makes one row per call, once,
however often the record is replayed. After that only staff change a row, each change one
``UPDATE`` whose ``WHERE`` checks the state it expects, so two people claiming at once cannot
both win.

The number staff call back is the one confirmed on the call: ``callback_request["number"]`` when
the call layer set it (today the caller ID Asterisk gave the call), else the call's caller
number. A number without a digit ("", "anonymous", "Restricted", "unknown"...) is a withheld
number: stored as NULL with ``number_withheld`` true, never as "".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import asyncpg

from pbx_router.store.conn import DbConnection
from pbx_router.store.errors import CallbackConflictError, CallbackNotFoundError

if TYPE_CHECKING:
    from pbx_router.store.calls import CallRecord

CallbackStatus = Literal["open", "claimed", "done"]
MAX_AUTHOR = 200
MAX_NOTE = 2000


def callback_number(value: str | None) -> str | None:
    """The number to call back, or None when the caller withheld it. Asterisk reports a withheld
    caller ID as an empty string or a word ("anonymous", "Restricted", "unknown"), never digits."""
    if value is None:
        return None
    text = value.strip()
    return text if any(ch.isdigit() for ch in text) else None


@dataclass(frozen=True)
class Callback:
    id: int
    call_id: str
    called_at: datetime
    number: str | None
    number_withheld: bool
    caller_name: str | None
    queue: str | None
    intent: str | None
    reason: str | None
    status: CallbackStatus
    claimed_by: str | None
    claimed_at: datetime | None
    done_by: str | None
    done_at: datetime | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """The admin API's view (``at`` and ``name`` as the list has always called them)."""
        return {
            "id": self.id, "call_id": self.call_id, "at": self.called_at.isoformat(),
            "number": self.number, "withheld": self.number_withheld, "name": self.caller_name,
            "queue": self.queue, "intent": self.intent, "reason": self.reason, "status": self.status,
            "claimed_by": self.claimed_by, "claimed_at": _iso(self.claimed_at),
            "done_by": self.done_by, "done_at": _iso(self.done_at), "note": self.note,
        }

    def __repr__(self) -> str:  # no number or name in logs
        return f"Callback(id={self.id}, call_id={self.call_id!r}, status={self.status!r})"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_COLUMNS = (
    "id, call_id, called_at, number, number_withheld, caller_name, queue, intent, reason, status,"
    " claimed_by, claimed_at, done_by, done_at, note"
)


def _from_row(row: asyncpg.Record) -> Callback:
    return Callback(**dict(row.items()))


# -- made from call records -------------------------------------------------------------------

INSERT_SQL = (
    "INSERT INTO callbacks (call_id, called_at, number, number_withheld, caller_name, queue, intent, reason)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (call_id) DO NOTHING"
)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "").strip()
    return text or None


def params_from_record(record: CallRecord) -> tuple[Any, ...] | None:
    """The ``INSERT_SQL`` parameters for a record carrying a callback request, else None."""
    request = (record.extra or {}).get("callback_request")
    if not isinstance(request, Mapping):
        return None
    # An explicit "number" is what the call confirmed (possibly: nothing); only a request that
    # does not say falls back to the call's caller ID.
    given = request.get("number", record.caller_number)
    number = callback_number(given if isinstance(given, str) else None)
    started = record.started_at
    return (
        record.call_id, started, number, number is None, _text(record.caller_name),
        _text(request.get("queue")), _text(record.intent or request.get("intent")), _text(request.get("reason")),
    )


async def insert_from_calls(conn: DbConnection, records: Iterable[CallRecord]) -> int:
    """Create the callback rows the records ask for (inside the caller's transaction)."""
    params = [p for p in (params_from_record(r) for r in records) if p is not None]
    if params:
        await conn.executemany(INSERT_SQL, params)
    return len(params)


# -- staff ------------------------------------------------------------------------------------


def _author(author: str) -> str:
    text = author.strip()
    if not text or len(text) > MAX_AUTHOR:
        raise ValueError(f"author must be 1 to {MAX_AUTHOR} characters")
    return text


class CallbackRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, *, include_done: bool = False, limit: int = 50) -> Sequence[Callback]:
        """Newest first; without ``include_done`` only what still needs a call (open, claimed)."""
        where = "" if include_done else " WHERE status <> 'done'"
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM callbacks{where} ORDER BY called_at DESC, id DESC LIMIT $1", max(0, limit)
        )
        return [_from_row(r) for r in rows]

    async def get(self, callback_id: int) -> Callback | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM callbacks WHERE id = $1", callback_id)
        return None if row is None else _from_row(row)

    async def for_call(self, call_id: str) -> Callback | None:
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM callbacks WHERE call_id = $1", call_id)
        return None if row is None else _from_row(row)

    async def claim(self, callback_id: int, author: str, at: datetime) -> Callback:
        """``author`` takes the request. Claiming one's own claim again is a no-op; someone
        else's claim or a done request is a ``CallbackConflictError``."""
        who = _author(author)
        row = await self._pool.fetchrow(
            "UPDATE callbacks SET status = 'claimed', claimed_by = $2,"
            " claimed_at = CASE WHEN status = 'open' THEN $3 ELSE claimed_at END"
            " WHERE id = $1 AND (status = 'open' OR (status = 'claimed' AND claimed_by = $2))"
            f" RETURNING {_COLUMNS}",
            callback_id, who, at,
        )
        if row is not None:
            return _from_row(row)
        raise await self._refusal(callback_id, "claim")

    async def complete(self, callback_id: int, author: str, at: datetime, note: str | None = None) -> Callback:
        """The caller was called back. Whoever claimed it, ``author`` is recorded as having done it
        (and as the claimer if nobody had claimed it). Done twice is a ``CallbackConflictError``."""
        who = _author(author)
        text = _text(note)
        if text is not None and len(text) > MAX_NOTE:
            raise ValueError(f"note is longer than {MAX_NOTE} characters")
        row = await self._pool.fetchrow(
            "UPDATE callbacks SET status = 'done', done_by = $2, done_at = $3, note = $4,"
            " claimed_by = COALESCE(claimed_by, $2), claimed_at = COALESCE(claimed_at, $3)"
            f" WHERE id = $1 AND status <> 'done' RETURNING {_COLUMNS}",
            callback_id, who, at, text,
        )
        if row is not None:
            return _from_row(row)
        raise await self._refusal(callback_id, "complete")

    async def _refusal(self, callback_id: int, action: str) -> Exception:
        current = await self.get(callback_id)
        if current is None:
            return CallbackNotFoundError(f"no callback request {callback_id}")
        if current.status == "done":
            when = current.done_at.isoformat(timespec="minutes") if current.done_at else "?"
            return CallbackConflictError(f"callback {callback_id} was already done by {current.done_by} at {when}")
        when = current.claimed_at.isoformat(timespec="minutes") if current.claimed_at else "?"
        return CallbackConflictError(
            f"callback {callback_id} is claimed by {current.claimed_by} (since {when}); cannot {action} it"
        )
