"""Overrides on a real PostgreSQL: every one recorded (with its cancellation), and a restarted
daemon gets back exactly the ones still in force."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest_asyncio

from pbx_router.admin import AdminServer, InMemoryBackend
from pbx_router.queues.overrides import Override
from pbx_router.store import Store
from pbx_router.store.overrides import OverrideRepository

from .conftest import AGENTS, QUEUES, START, TOKEN, FakeClock, make_api


@pytest_asyncio.fixture
async def store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(database_url, tmp_path)
    try:
        yield opened
    finally:
        await opened.close()


def override(kind: str = "close_queue", scope: str = "frontdesk", minutes: float = 60,
             created: dt.datetime = START, **extra: str) -> Override:
    return Override(kind=kind, scope=scope, author="Dana", reason="meeting", created_at=created,  # type: ignore[arg-type]
                    expires_at=created + dt.timedelta(minutes=minutes), **extra)


async def test_save_active_cancel_history(store: Store) -> None:
    repo = OverrideRepository(store.pool)
    closed = override()
    redirect = override("redirect_intent", "prescription_refill", 30, START + dt.timedelta(minutes=1),
                        target="nurse_line")
    short = override("after_hours", "all", 5, START - dt.timedelta(minutes=1))
    for o in (closed, redirect, short):
        assert await repo.save(o) is True
    assert await repo.save(closed) is False  # a retry records nothing twice

    later = START + dt.timedelta(minutes=10)  # "short" has expired by now
    assert await repo.active(later) == [closed, redirect]

    assert await repo.cancel(closed.id, "Sam", "meeting cancelled", later) is True
    assert await repo.cancel(closed.id, "Sam", "again", later) is False
    assert await repo.cancel(short.id, "Sam", "already over", later) is False
    assert await repo.cancel(uuid.uuid4().hex, "Sam", "no such", later) is False
    assert await repo.active(later) == [redirect]

    history = await repo.history()
    assert [r.override for r in history] == [redirect, closed, short]  # newest first
    cancelled = history[1].to_dict()
    assert (cancelled["cancelled_by"], cancelled["cancel_reason"]) == ("Sam", "meeting cancelled")
    assert dt.datetime.fromisoformat(cancelled["cancelled_at"]) == later
    assert history[0].cancelled_at is None
    assert len(await repo.history(limit=1)) == 1


async def test_unreadable_rows_are_skipped_not_fatal(store: Store) -> None:
    repo = OverrideRepository(store.pool)
    good = override()
    await repo.save(good)
    await store.pool.execute(
        "INSERT INTO overrides (id, kind, scope, target, author, reason, created_at, expires_at)"
        " VALUES ($1, 'teleport_queue', 'x', NULL, 'a', 'r', $2, $3),"
        "        ($4, 'redirect_queue', 'x', '5'::jsonb, 'a', 'r', $2, $3)",
        uuid.uuid4(), START, START + dt.timedelta(hours=1), uuid.uuid4(),
    )
    assert await repo.active(START) == [good]
    assert [r.override for r in await repo.history()] == [good]


async def test_overrides_made_through_the_api_survive_a_restart(store: Store) -> None:
    clock = FakeClock()
    repo = OverrideRepository(store.pool)
    first = InMemoryBackend(queues=QUEUES, agents=AGENTS, recorder=repo, clock=clock)
    async with AdminServer(first, port=0, token=TOKEN, clock=clock) as server, aiohttp.ClientSession() as session:
        api = make_api(server.url, session)
        kept = (await api("POST", "/api/overrides", {"kind": "close_queue", "scope": "frontdesk", "author": "Dana",
                                                      "reason": "training", "ttl_minutes": 120})).body
        dropped = (await api("POST", "/api/overrides", {"kind": "after_hours", "author": "Dana",
                                                         "reason": "oops", "ttl_minutes": 120})).body
        presence = await api("PUT", "/api/agents/PJSIP%2Fagent1/presence",
                             {"presence": "paused", "author": "Ann", "reason": "lunch", "ttl_minutes": 30})
        assert presence.status == 200
        clock.advance(minutes=1)
        assert (await api("DELETE", f"/api/overrides/{dropped['id']}",
                          {"author": "Dana", "reason": "wrong button"})).status == 200

    clock.advance(minutes=40)  # the daemon was down a while; the presence override ran out meanwhile
    restarted = InMemoryBackend(queues=QUEUES, agents=AGENTS, recorder=repo, clock=clock)
    await restarted.restore()
    async with AdminServer(restarted, port=0, token=TOKEN, clock=clock) as server, \
            aiohttp.ClientSession() as session:
        api = make_api(server.url, session)
        assert (await api("GET", "/api/overrides")).body == {"overrides": [kept]}
        queues = {q["queue"]: q["state"] for q in (await api("GET", "/api/queues")).body["queues"]}
        assert queues == {"frontdesk": "closed", "billing": "open"}

    # ... and all four changes are in the record, with who cancelled what and why.
    rows = await store.pool.fetch("SELECT kind, author, cancelled_by, cancel_reason, target::text AS target"
                                  " FROM overrides ORDER BY created_at, kind")
    assert sorted((r["kind"], r["author"], r["cancelled_by"], r["cancel_reason"]) for r in rows) == [
        ("after_hours", "Dana", "Dana", "wrong button"),
        ("agent_presence", "Ann", None, None),
        ("close_queue", "Dana", None, None),
    ]
    assert {json.loads(r["target"]) if r["target"] else None for r in rows} == {None, "paused"}


async def test_when_the_record_cannot_be_written_nothing_changes(store: Store) -> None:
    clock = FakeClock()
    backend = InMemoryBackend(queues=QUEUES, agents=AGENTS, recorder=OverrideRepository(store.pool), clock=clock)
    async with AdminServer(backend, port=0, token=TOKEN, clock=clock) as server, aiohttp.ClientSession() as session:
        api = make_api(server.url, session)
        await store.pool.close()  # the database is gone
        answer = await api("POST", "/api/overrides", {"kind": "close_queue", "scope": "frontdesk", "author": "Dana",
                                                       "reason": "training", "ttl_minutes": 120})
        assert answer.status == 503
        assert "could not be recorded" in answer.body["error"] and "nothing was changed" in answer.body["error"]
        assert (await api("GET", "/api/overrides")).body == {"overrides": []}
        assert {q["state"] for q in (await api("GET", "/api/queues")).body["queues"]} == {"open"}
