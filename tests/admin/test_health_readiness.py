"""/healthz says the process answers; /readyz says whether calls can be handled (the Asterisk link
and the database), 503 with what is missing otherwise; /health stays for old health checks.
Checked on the API alone and on the daemon as wired, with Asterisk going away and coming back."""

from __future__ import annotations

from typing import Any

import aiohttp

from pbx_router.admin import InMemoryBackend
from pbx_router.testing import AsteriskEmulator

from .conftest import Api
from helpers import eventually

ADMIN_TOKEN = "readiness-test-admin-token-0123"
ADMIN = f"admin: {{port: 0, token: {ADMIN_TOKEN}}}\n"
DaemonFactory = Any


async def test_probes_need_no_token_and_readyz_is_503_with_what_is_not_ready(
    api: Api, backend: InMemoryBackend
) -> None:
    assert (await api("GET", "/healthz", token=None)).body == {"ok": True}
    ready = await api("GET", "/readyz", token=None)
    assert ready.status == 200 and ready.body["ready"] is True and ready.body["not_ready"] == []

    backend.database_ok = False
    answer = await api("GET", "/readyz", token=None)
    assert answer.status == 503
    assert answer.body["ready"] is False and answer.body["not_ready"] == ["database: not ready"]
    assert answer.body["checks"]["ari"]["ok"] is True
    # Liveness is not readiness: the process still answers.
    assert (await api("GET", "/healthz", token=None)).status == 200
    # The old endpoint keeps its old contract (always 200, readiness in the body).
    old = await api("GET", "/health", token=None)
    assert old.status == 200 and old.body["ok"] is True


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:  # no token: what Docker's HEALTHCHECK sends
        return resp.status, await resp.json()


async def test_readyz_of_the_daemon_follows_the_asterisk_link(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon(ADMIN)
    base = daemon.app.admin_url
    async with aiohttp.ClientSession() as http:

        async def readyz_is(status: int) -> dict[str, Any] | None:
            got, body = await _get(http, f"{base}/readyz")
            return body if got == status else None

        body = await eventually(lambda: readyz_is(200), timeout=20, what="/readyz 200 with ARI and the database up")
        assert body["checks"]["ari"]["ok"] and body["checks"]["database"]["ok"]

        await pbx.stop()  # Asterisk goes away: the port refuses connections
        body = await eventually(lambda: readyz_is(503), timeout=20, what="/readyz 503 with ARI down")
        assert body["ready"] is False
        assert [line.split(":")[0] for line in body["not_ready"]] == ["ari"]
        assert body["checks"]["database"]["ok"] is True
        assert await _get(http, f"{base}/healthz") == (200, {"ok": True})  # alive all along

        await pbx.start()  # same port
        await eventually(lambda: readyz_is(200), timeout=20, what="/readyz 200 once Asterisk is back")


async def test_readyz_of_the_daemon_is_503_while_its_database_is_unreachable(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon(ADMIN, db_url="postgresql://pbx@127.0.0.1:9/pbx")  # nothing listens
    async with aiohttp.ClientSession() as http:
        status, body = await _get(http, f"{daemon.app.admin_url}/readyz")
    assert status == 503
    assert body["checks"]["ari"]["ok"] is True  # calls are answered; the database is what is missing
    assert [line.split(":")[0] for line in body["not_ready"]] == ["database"]
    assert "127.0.0.1" not in str(body)  # an unauthenticated answer names no address

