"""The ``calls`` table: the record type, its JSON form (used by the spool) and the queries.

Merging rule (why the upsert looks the way it does): a call is submitted at start, answer and end,
and a record may reach the database late (replayed from the spool) or twice. Each record carries
``updated_at``, the moment it was submitted; for every column the newer record's non-null value
wins, and a null never erases a value. ``extra`` is merged key by key the same way. So any order of
arrival and any number of duplicates give the same row.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from pbx_router.store.callbacks import insert_from_calls
from pbx_router.store.conn import DbConnection

_TEXT_FIELDS = (
    "channel_id",
    "caller_number",
    "caller_name",
    "dialled",
    "outcome",
    "transcript",
    "intent",
)
_TIME_FIELDS = ("started_at", "answered_at", "ended_at", "updated_at")


@dataclass
class CallRecord:
    """What we know about one call. PHI fields are left out of ``repr`` so logging one is safe."""

    call_id: str
    channel_id: str
    caller_number: str | None = field(repr=False)
    caller_name: str | None = field(repr=False)
    dialled: str | None
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str | None = None
    route: dict[str, Any] | None = None
    transcript: str | None = field(default=None, repr=False)
    intent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)
    # When this information was submitted; ``CallRecorder.submit`` stamps it if left None.
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (ISO times, NULs stripped, unknown objects as str)."""
        out: dict[str, Any] = {"call_id": _clean_text(self.call_id)}
        for name in _TEXT_FIELDS:
            out[name] = _clean_text(getattr(self, name))
        for name in _TIME_FIELDS:
            value = getattr(self, name)
            out[name] = None if value is None else _aware(value).isoformat()
        out["route"] = None if self.route is None else _clean_json(self.route)
        out["extra"] = _clean_json(self.extra or {})
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallRecord:
        """Inverse of ``to_json``; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("call record must be a JSON object")
        try:
            call_id = data["call_id"]
            started = data["started_at"]
        except KeyError as exc:
            raise ValueError(f"call record lacks {exc.args[0]}") from None
        if not isinstance(call_id, str) or not call_id:
            raise ValueError("call_id must be a non-empty string")
        texts: dict[str, str | None] = {}
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            texts[name] = value
        times: dict[str, datetime | None] = {}
        for name in _TIME_FIELDS:
            value = data.get(name)
            if value is None:
                times[name] = None
            elif isinstance(value, str):
                times[name] = _aware(datetime.fromisoformat(value))
            else:
                raise ValueError(f"{name} must be an ISO timestamp")
        if started is None:
            raise ValueError("started_at is required")
        route = data.get("route")
        extra = data.get("extra") or {}
        if route is not None and not isinstance(route, dict):
            raise ValueError("route must be an object")
        if not isinstance(extra, dict):
            raise ValueError("extra must be an object")
        return cls(
            call_id=call_id,
            channel_id=texts["channel_id"] or "",
            caller_number=texts["caller_number"],
            caller_name=texts["caller_name"],
            dialled=texts["dialled"],
            started_at=times["started_at"],  # type: ignore[arg-type]  # checked above
            answered_at=times["answered_at"],
            ended_at=times["ended_at"],
            outcome=texts["outcome"],
            route=route,
            transcript=texts["transcript"],
            intent=texts["intent"],
            extra=extra,
            updated_at=times["updated_at"],
        )


def _aware(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (the daemon never produces local naive times)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _clean_text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a stray one must not poison a whole batch.
    return None if value is None else str(value).replace("\x00", "")


def _clean_json(value: Any) -> Any:
    """JSON-safe copy: unknown objects become str, NULs (jsonb rejects them) are removed."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {str(_clean_json(str(k))): _clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if isinstance(value, datetime):
        return _aware(value).isoformat()
    return str(value).replace("\x00", "")


# -- SQL --------------------------------------------------------------------------------------

_COLUMNS = (
    "call_id",
    "channel_id",
    "caller_number",
    "caller_name",
    "dialled",
    "started_at",
    "answered_at",
    "ended_at",
    "outcome",
    "route",
    "transcript",
    "intent",
    "extra",
    "updated_at",
)
_JSON_COLUMNS = {"route", "extra"}


def _upsert_sql() -> str:
    placeholders = ", ".join(
        f"${i}::text::jsonb" if col in _JSON_COLUMNS else f"${i}"
        for i, col in enumerate(_COLUMNS, start=1)
    )
    newer = "EXCLUDED.updated_at >= calls.updated_at"
    sets = []
    for col in _COLUMNS[1:]:
        if col == "updated_at":
            sets.append("updated_at = GREATEST(calls.updated_at, EXCLUDED.updated_at)")
        elif col == "extra":
            sets.append(
                f"extra = CASE WHEN {newer} THEN calls.extra || EXCLUDED.extra"
                " ELSE EXCLUDED.extra || calls.extra END"
            )
        else:
            sets.append(
                f"{col} = CASE WHEN {newer} THEN COALESCE(EXCLUDED.{col}, calls.{col})"
                f" ELSE COALESCE(calls.{col}, EXCLUDED.{col}) END"
            )
    return (
        f"INSERT INTO calls ({', '.join(_COLUMNS)}) VALUES ({placeholders})\n"
        f"ON CONFLICT (call_id) DO UPDATE SET {', '.join(sets)}"
    )


UPSERT_SQL = _upsert_sql()
_SELECT = (
    "SELECT call_id, channel_id, caller_number, caller_name, dialled, started_at, answered_at,"
    " ended_at, outcome, route::text AS route, transcript, intent, extra::text AS extra,"
    " updated_at FROM calls"
)


def _params(record: CallRecord) -> tuple[Any, ...]:
    data = record.to_json()
    values: list[Any] = []
    for col in _COLUMNS:
        if col in _JSON_COLUMNS:
            values.append(None if data[col] is None else json.dumps(data[col]))
        elif col in _TIME_FIELDS:
            value = getattr(record, col)
            if value is None and col == "updated_at":
                value = datetime.now(UTC)
            values.append(None if value is None else _aware(value))
        elif col == "caller_number":
            # Asterisk gives a withheld caller ID as "": that is no number, not an empty one.
            values.append(data[col] if data[col] and data[col].strip() else None)
        else:
            values.append(data[col])
    return tuple(values)


def _from_row(row: asyncpg.Record) -> CallRecord:
    return CallRecord(
        call_id=row["call_id"],
        channel_id=row["channel_id"],
        caller_number=row["caller_number"],
        caller_name=row["caller_name"],
        dialled=row["dialled"],
        started_at=row["started_at"],
        answered_at=row["answered_at"],
        ended_at=row["ended_at"],
        outcome=row["outcome"],
        route=None if row["route"] is None else json.loads(row["route"]),
        transcript=row["transcript"],
        intent=row["intent"],
        extra=json.loads(row["extra"]),
        updated_at=row["updated_at"],
    )


async def upsert_calls(conn: DbConnection, records: Iterable[CallRecord]) -> int:
    """Write records in one transaction, with the callback requests they carry (see
    ``callbacks.py``); returns how many records. Used by the recorder."""
    batch = list(records)
    params = [_params(record) for record in batch]
    if params:
        async with conn.transaction():
            await conn.executemany(UPSERT_SQL, params)
            await insert_from_calls(conn, batch)
    return len(params)


class CallRepository:
    """Reads (and direct writes) of ``calls`` over the store's pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def upsert(self, record: CallRecord) -> None:
        """Direct write, bypassing the recorder (tests, admin tools). Calls use the recorder."""
        async with self._pool.acquire() as conn:
            await upsert_calls(conn, [record])

    async def get(self, call_id: str) -> CallRecord | None:
        row = await self._pool.fetchrow(f"{_SELECT} WHERE call_id = $1", call_id)
        return None if row is None else _from_row(row)

    async def list(self, limit: int = 50) -> Sequence[CallRecord]:
        """The most recent calls, newest first."""
        rows = await self._pool.fetch(
            f"{_SELECT} ORDER BY started_at DESC, call_id DESC LIMIT $1", max(0, limit)
        )
        return [_from_row(row) for row in rows]

    # builtins.list: inside this class ``list`` names the method above.
    async def recent_times(
        self, number: str, since: datetime | timedelta, limit: int = 100
    ) -> builtins.list[datetime]:
        """When ``number`` called since a moment (or within a period), newest first."""
        start = datetime.now(UTC) - since if isinstance(since, timedelta) else _aware(since)
        rows = await self._pool.fetch(
            "SELECT started_at FROM calls WHERE caller_number = $1 AND started_at >= $2"
            " ORDER BY started_at DESC LIMIT $3",
            number, start, limit,
        )
        return [r["started_at"] for r in rows]

    async def recent_from(self, number: str, since: datetime | timedelta) -> int:
        """How many calls came from ``number`` since a moment (or within a period up to now)."""
        start = datetime.now(UTC) - since if isinstance(since, timedelta) else _aware(since)
        count = await self._pool.fetchval(
            "SELECT count(*) FROM calls WHERE caller_number = $1 AND started_at >= $2",
            number,
            start,
        )
        return int(count)

    async def count(self) -> int:
        return int(await self._pool.fetchval("SELECT count(*) FROM calls"))
