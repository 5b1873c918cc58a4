"""The front desk works its callback list on the daemon as wired: callers who asked for a call
back after hours are listed (a withheld number says so), claimed and marked done from the CLI and
the API, and every step is in PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from pbx_router.cli import main
from pbx_router.testing import AsteriskEmulator

from helpers import eventually

RULES = Path(__file__).parents[2] / "examples" / "clinic.yaml"
NIGHT = dt.datetime(2026, 12, 1, 22, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # a Tuesday
TOKEN = "callbacks-test-admin-token-0123"
CONFIG = f"""rules: {RULES}
speech: {{enabled: false}}
admin: {{port: 0, token: {TOKEN}}}
"""
DaemonFactory = Any


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


async def cli(*args: str) -> tuple[int, str, str]:
    """The real CLI (a blocking client: run off the loop that serves the API). The daemon runs in
    this process and logs to the same stdout meanwhile: its lines are left out."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(args))

    code = await asyncio.to_thread(run)
    printed = "".join(line for line in out.getvalue().splitlines(keepends=True) if not _LOG_LINE.match(line))
    return code, printed, err.getvalue()


@pytest.fixture
def night_pbx(pbx: AsteriskEmulator) -> AsteriskEmulator:
    pbx.sounds["custom/clinic-next-day-callback"] = 0.3
    for ctx in ("router-queue", "clinic-voicemail", "clinic-after-hours"):
        pbx.add_context(ctx)
    return pbx


async def test_callbacks_are_listed_claimed_and_done_from_the_cli_and_the_api(
    night_pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PBX_ROUTER_ADMIN_TOKEN", raising=False)
    daemon = await start_daemon(CONFIG)
    daemon.app.brain.clock = lambda: NIGHT
    # "4" is test results: after hours the clinic's rules take a callback request for records.
    for number in ("+15554000031", ""):  # the second caller withholds their number
        call = await night_pbx.place_call(caller_number=number, dialled="100", dtmf=[(0.3, "4")])
        await call.wait_for(lambda c: c.fate == "hung_up_by_app", timeout=20)
    url = daemon.app.admin_url
    where = ("--url", url, "--token", TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async with aiohttp.ClientSession(headers=headers) as http:

        async def listed() -> list[dict[str, Any]]:
            async with http.get(f"{url}/api/callbacks") as resp:
                assert resp.status == 200
                rows = list((await resp.json())["callbacks"])
            return rows if len(rows) == 2 else []

        rows = await eventually(listed, timeout=15, what="both callback requests listed")
        by_number = {r["number"]: r for r in rows}
        known, withheld = by_number["+15554000031"], by_number[None]
        assert withheld["withheld"] is True and known["withheld"] is False
        assert {r["queue"] for r in rows} == {"records"} and {r["status"] for r in rows} == {"open"}

        code, out, _ = await cli("callbacks", "list", *where)
        assert code == 0
        lines = {line.split()[0]: line for line in out.splitlines()[1:]}
        assert "+15554000031" in lines[str(known["id"])] and "withheld" in lines[str(withheld["id"])]

        code, out, _ = await cli("callbacks", "claim", str(known["id"]), "--author", "Dana", *where)
        assert (code, out.strip()) == (0, f"callback {known['id']}: claimed by Dana; call +15554000031")
        # Someone else tries the same caller: told who has it.
        async with http.post(f"{url}/api/callbacks/{known['id']}/claim", json={"author": "Sam"}) as resp:
            assert resp.status == 409 and "claimed by Dana" in (await resp.json())["error"]
        async with http.post(f"{url}/api/callbacks/{known['id']}/claim", json={}) as resp:
            assert resp.status == 400  # an author is required

        code, out, _ = await cli("callbacks", "done", str(known["id"]), "--author", "Dana",
                                 "--note", "results explained", *where)
        assert (code, out.strip()) == (0, f"callback {known['id']}: done by Dana")
        async with http.post(f"{url}/api/callbacks/{withheld['id']}/done", json={"author": "Sam"}) as resp:
            assert resp.status == 200 and (await resp.json())["done_by"] == "Sam"
        async with http.post(f"{url}/api/callbacks/{withheld['id']}/done", json={"author": "Sam"}) as resp:
            assert resp.status == 409  # done once

    code, out, _ = await cli("callbacks", "list", *where)
    assert (code, out.strip()) == (0, "no callback requests waiting")
    code, out, _ = await cli("callbacks", "list", "--all", *where)
    assert "done by Dana" in out and "done by Sam" in out
    code, _, err = await cli("callbacks", "claim", "999999", "--author", "Dana", *where)
    assert code == 1 and "no callback request 999999" in err

    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetch("SELECT number, number_withheld, status, claimed_by, done_by, note"
                                  " FROM callbacks ORDER BY number NULLS LAST")
    finally:
        await conn.close()
    assert [tuple(r) for r in stored] == [
        ("+15554000031", False, "done", "Dana", "Dana", "results explained"),
        (None, True, "done", "Sam", "Sam", None),
    ]
