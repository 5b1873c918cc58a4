"""Callback requests in PostgreSQL: made once from the call record however often it is replayed,
a withheld number is marked withheld (never ""), and staff claim and complete them with the
database deciding who won."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import asyncpg
import pytest

from pbx_router.store import CallbackConflictError, CallbackNotFoundError, CallRecord, Store
from pbx_router.store.schema import apply_migrations, load_migrations

from .helpers import T0, call


def callback_call(n: int, caller_id: str | None, **request: object) -> CallRecord:
    """A call that ended in a callback request, as the call layer records it."""
    record = call(n, caller_number=caller_id, outcome="callback:records", intent="test_results")
    record.extra = {"callback_request": {"queue": "records", "intent": "test_results",
                                         "reason": "after hours", "number": caller_id, **request}}
    return record


async def test_a_callback_request_in_a_call_record_becomes_one_row_even_when_replayed(store: Store) -> None:
    record = callback_call(1, "+15550001111")
    await store.calls.upsert(record)  # what the recorder writes at the end of the call
    [row] = await store.callbacks.list()
    assert (row.number, row.number_withheld, row.queue, row.intent, row.status) == (
        "+15550001111", False, "records", "test_results", "open")
    assert row.called_at == T0 + timedelta(minutes=1)

    await store.callbacks.claim(row.id, "Dana", T0 + timedelta(hours=10))
    # The spool replays the same record later (or twice): the claim stands, no second row.
    await store.calls.upsert(dataclasses.replace(record, updated_at=T0 + timedelta(hours=11)))
    await store.calls.upsert(record)
    [again] = await store.callbacks.list()
    assert (again.id, again.status, again.claimed_by) == (row.id, "claimed", "Dana")
    # A call without a callback request makes none.
    await store.calls.upsert(call(2))
    assert len(await store.callbacks.list(include_done=True)) == 1


@pytest.mark.parametrize("withheld", ["", "  ", "anonymous", "Restricted", "unknown", None])
async def test_a_withheld_number_is_marked_withheld_never_stored_empty(store: Store, withheld: str | None) -> None:
    await store.calls.upsert(callback_call(3, withheld))
    [row] = await store.callbacks.list()
    assert row.number is None and row.number_withheld is True
    assert row.to_dict()["withheld"] is True and row.to_dict()["number"] is None
    number = await store.pool.fetchval("SELECT caller_number FROM calls WHERE call_id = 'call-0003'")
    assert number != "" and (number is None or number.strip())


async def test_the_number_confirmed_on_the_call_wins_over_the_caller_id(store: Store) -> None:
    record = callback_call(4, "+15550004444", number="+15550009999")
    await store.calls.upsert(record)
    assert [r.number for r in await store.callbacks.list()] == ["+15550009999"]


async def test_the_database_refuses_an_empty_number(store: Store) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await store.pool.execute(
            "INSERT INTO callbacks (call_id, called_at, number, number_withheld) VALUES ('x', now(), '', false)")


async def test_claim_and_done_record_who_and_refuse_the_second_comer(store: Store) -> None:
    await store.calls.upsert(callback_call(5, "+15550005555"))
    await store.calls.upsert(callback_call(6, "+15550006666"))
    first, second = sorted(await store.callbacks.list(), key=lambda r: r.call_id)
    at = T0 + timedelta(hours=9)

    claimed = await store.callbacks.claim(first.id, "Dana", at)
    assert (claimed.status, claimed.claimed_by, claimed.claimed_at) == ("claimed", "Dana", at)
    assert (await store.callbacks.claim(first.id, "Dana", at + timedelta(minutes=5))).claimed_at == at  # again: no-op
    with pytest.raises(CallbackConflictError, match="claimed by Dana"):
        await store.callbacks.claim(first.id, "Sam", at)

    done = await store.callbacks.complete(first.id, "Sam", at + timedelta(minutes=3), "left a voicemail")
    assert (done.status, done.done_by, done.claimed_by, done.note) == ("done", "Sam", "Dana", "left a voicemail")
    with pytest.raises(CallbackConflictError, match="already done by Sam"):
        await store.callbacks.complete(first.id, "Dana", at)
    with pytest.raises(CallbackConflictError, match="already done"):
        await store.callbacks.claim(first.id, "Dana", at)

    # Done without a claim: the one who did it counts as the claimer too.
    unclaimed = await store.callbacks.complete(second.id, "Lee", at)
    assert (unclaimed.claimed_by, unclaimed.done_by) == ("Lee", "Lee")

    assert await store.callbacks.list() == []  # nothing left to call back
    assert {r.status for r in await store.callbacks.list(include_done=True)} == {"done"}
    with pytest.raises(CallbackNotFoundError):
        await store.callbacks.claim(999_999, "Dana", at)
    with pytest.raises(ValueError, match="author"):
        await store.callbacks.claim(second.id, "  ", at)


async def test_requests_recorded_before_the_table_existed_are_carried_over(database_url: str) -> None:
    shipped = load_migrations()
    before = [m for m in shipped if m.name != "callbacks"]
    conn = await asyncpg.connect(database_url)
    try:
        await apply_migrations(conn, before)
        await conn.execute(
            "INSERT INTO calls (call_id, channel_id, caller_number, started_at, outcome, intent, extra)"
            " VALUES ('old-1', 'c1', '', $1, 'callback:records', 'test_results',"
            " '{\"callback_request\": {\"queue\": \"records\", \"number\": \"\"}}'),"
            " ('old-2', 'c2', '+15550007777', $1, 'callback:nurse', 'speak_to_nurse',"
            " '{\"callback_request\": {\"queue\": \"nurse\"}}')",
            T0,
        )
        await apply_migrations(conn, shipped)
        rows = await conn.fetch("SELECT call_id, number, number_withheld, queue, status FROM callbacks ORDER BY call_id")
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [
        ("old-1", None, True, "records", "open"),
        ("old-2", "+15550007777", False, "nurse", "open"),
    ]
