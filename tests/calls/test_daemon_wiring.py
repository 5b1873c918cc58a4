"""The daemon as wired (``app.py``), not units assembled by hand: the admin API and CLI act on the
running queues, overrides are checked against what the rules file really has (and what a reload
brings), a reload that changes ``queues:`` says a restart is due, and ``known_patient`` comes
from the patient directory."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from pbx_router.cli import main
from pbx_router.testing import AgentBehaviour, AsteriskEmulator

from helpers import eventually

DaemonFactory = Any
TOKEN = "wiring-test-admin-token-0123456789"
QUEUE = {"ring_timeout_s": 5.0, "retry_s": 0.2, "announce_every_s": None, "wrapup_s": 0}
RULES: dict[str, Any] = {
    "version": 1,
    "settings": {"timezone": "UTC", "emergency": {"target": "q1", "chain": ["q1", "person"]}},
    "intents": {
        "emergency": {"urgency": "emergency", "digit": "9", "keywords": {"chest pain": 1.0}},
        "routine": {"digit": "1", "keywords": {"question": 1.0}},
    },
    "targets": {
        "q1": {"queue": "q1"},
        "q2": {"queue": "q2"},
        "person": {"dialplan": {"context": "pbx-router-fallback"}},
    },
    "queues": {"q1": dict(QUEUE), "q2": dict(QUEUE)},
    "agents": {
        "agent1": {"endpoint": "PJSIP/agent1", "name": "Ann", "queues": ["q1"]},
        "agent2": {"endpoint": "PJSIP/agent2", "name": "Bob", "queues": ["q1", "q2"]},
    },
    "rules": [{"name": "everyone", "then": {"target": "q1"}}],
}
_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


async def cli(*args: str) -> tuple[int, str, str]:
    """The real CLI, off the loop that serves the API (the daemon runs in this process)."""
    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(list(args))

    code = await asyncio.to_thread(run)
    printed = "".join(line for line in out.getvalue().splitlines(keepends=True) if not _LOG_LINE.match(line))
    return code, printed, err.getvalue()


def write_rules(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def start(start_daemon: DaemonFactory, rules: Path) -> Any:
    return await start_daemon(f"rules: {rules}\nspeech: {{enabled: false}}\nadmin: {{port: 0, token: {TOKEN}}}\n")


async def test_agent_presence_from_the_cli_stops_the_running_daemon_ringing_that_agent(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PBX_ROUTER_ADMIN_TOKEN", raising=False)
    for agent in ("PJSIP/agent1", "PJSIP/agent2"):
        pbx.add_endpoint(agent, AgentBehaviour.answer_after(0.3))
    daemon = await start(start_daemon, write_rules(tmp_path / "rules.yaml", RULES))
    url = daemon.app.admin_url
    where = ("--url", url, "--token", TOKEN)

    # Staff name the agent as the rules file does ("agent1"), not by its device.
    code, out, err = await cli("agent", "presence", "agent1", "logged_out", "--reason", "lunch",
                               "--author", "Ann", "--ttl", "1h", *where)
    assert code == 0, err

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.get(f"{url}/api/agents") as resp:
            agents = {a["endpoint"]: a for a in (await resp.json())["agents"]}
        assert (agents["PJSIP/agent1"]["presence"], agents["PJSIP/agent1"]["presence_override"]) == ("logged_out", True)
        assert agents["PJSIP/agent2"]["presence"] == "logged_in"
        async with http.get(f"{url}/api/queues") as resp:
            q1 = next(q for q in (await resp.json())["queues"] if q["queue"] == "q1")
        assert q1["agents"]["logged_out"] == 1, q1

    call = await pbx.place_call(caller_number="+15557100001", dialled="100", dtmf=[(0.3, "1")])
    await call.wait_for(lambda c: c.fate == "bridged", timeout=20)
    assert pbx.endpoint("PJSIP/agent1").channels == []  # logged out: never rung
    assert len(pbx.endpoint("PJSIP/agent2").channels) == 1
    await call.hangup()

    code, out, _ = await cli("agent", "list", *where)
    assert code == 0 and re.search(r"PJSIP/agent1\s.*logged_out", out), out


async def test_overrides_are_checked_against_the_rules_in_force_and_a_queue_change_asks_for_a_restart(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PBX_ROUTER_ADMIN_TOKEN", raising=False)
    rules = write_rules(tmp_path / "rules.yaml", RULES)
    daemon = await start(start_daemon, rules)
    url = daemon.app.admin_url
    base = {"author": "Dana", "reason": "test", "ttl_minutes": 30}

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:

        async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            async with http.post(f"{url}/api/overrides", json={**base, **body}) as resp:
                return resp.status, await resp.json()

        status, body = await post({"kind": "close_queue", "scope": "q3"})
        assert (status, body["error"]) == (422, "no queue 'q3' (queues: q1, q2)")
        status, body = await post({"kind": "redirect_intent", "scope": "refills", "target": "q2"})
        assert status == 422 and body["error"].startswith("no intent 'refills' (intents: emergency, routine")
        status, body = await post({"kind": "redirect_queue", "scope": "q1", "target": "nowhere"})
        assert status == 422 and body["error"].startswith("no target 'nowhere' in the rules file (targets: ")
        status, body = await post({"kind": "agent_presence", "scope": "agent9", "target": "paused"})
        assert (status, body["error"]) == (422, "no agent 'agent9'")
        async with http.get(f"{url}/api/overrides") as resp:
            assert (await resp.json())["overrides"] == []
        status, _ = await post({"kind": "close_queue", "scope": "q2"})
        assert status == 201

        # The clinic adds an intent, a target and a queue (not targeted yet), and reloads.
        doc = yaml.safe_load(yaml.safe_dump(RULES))
        doc["intents"]["refills"] = {"digit": "2", "keywords": {"refill": 1.0}}
        doc["targets"]["front"] = {"dialplan": {"context": "clinic-frontdesk"}}
        doc["queues"]["q3"] = dict(QUEUE)
        write_rules(rules, doc)
        async with http.post(f"{url}/api/rules/reload") as resp:
            reloaded = await resp.json()
        assert resp.status == 200 and reloaded["ok"] is True, reloaded
        assert reloaded["restart_required"] == [
            "queues: restart required (queue q3 added); the queues loaded at start stay in force until then"]
        async with http.get(f"{url}/api/status") as resp:
            assert (await resp.json())["rules"]["restart_required"] == reloaded["restart_required"]
        code, out, _ = await cli("status", "--url", url, "--token", TOKEN)
        assert code == 0 and "RESTART REQUIRED: queues: restart required (queue q3 added)" in out, out

        # New intents and targets are nameable at once; the queue the daemon does not run yet is
        # still refused, and the queues it runs are unchanged.
        status, body = await post({"kind": "redirect_intent", "scope": "refills", "target": "front"})
        assert status == 201, body
        status, body = await post({"kind": "close_queue", "scope": "q3"})
        assert status == 422 and "(queues: q1, q2)" in body["error"]
        async with http.get(f"{url}/api/queues") as resp:
            assert sorted(q["queue"] for q in (await resp.json())["queues"]) == ["q1", "q2"]

        # Back to the file the queues were started with: nothing waits for a restart.
        write_rules(rules, RULES)
        async with http.post(f"{url}/api/rules/reload") as resp:
            assert (await resp.json())["restart_required"] == []


async def test_a_known_patients_call_takes_the_known_patient_rule(
    pbx: AsteriskEmulator, start_daemon: DaemonFactory, database_url: str, tmp_path: Path
) -> None:
    pbx.add_context("clinic-patients")
    doc: dict[str, Any] = {
        "version": 1,
        "settings": {"timezone": "UTC", "emergency": {"target": "front"}},
        "intents": {
            "emergency": {"urgency": "emergency", "digit": "9", "keywords": {"chest pain": 1.0}},
            "routine": {"digit": "1", "keywords": {"question": 1.0}},
        },
        "targets": {
            "patients": {"dialplan": {"context": "clinic-patients"}},
            "front": {"dialplan": {"context": "clinic-frontdesk"}},
        },
        "rules": [
            {"name": "known", "when": {"known_patient": True}, "then": {"target": "patients"}},
            {"name": "everyone", "then": {"target": "front"}},
        ],
    }
    daemon = await start(start_daemon, write_rules(tmp_path / "rules.yaml", doc))
    await daemon.app.get_store()  # the schema, patients included, is in place
    conn = await asyncpg.connect(database_url)
    try:
        patient = await conn.fetchval("INSERT INTO patients (record_number, first_name, last_name, date_of_birth)"
                                      " VALUES ('MRN-7', 'Ada', 'Byron', '1970-01-02') RETURNING id")
        await conn.execute("INSERT INTO patient_phones (patient_id, number) VALUES ($1, '+15557200001')", patient)
    finally:
        await conn.close()

    # The caller ID as the carrier sends it (10 digits) is found under its E.164 form.
    known = await pbx.place_call(caller_number="5557200001", dialled="100", dtmf=[(0.3, "1")])
    stranger = await pbx.place_call(caller_number="+15557200999", dialled="100", dtmf=[(0.3, "1")])
    for call in (known, stranger):
        await call.wait_for(lambda c: c.fate == "continued", timeout=20)
    assert known.continued_to is not None and known.continued_to[0] == "clinic-patients"
    assert stranger.continued_to is not None and stranger.continued_to[0] == "clinic-frontdesk"

    async def recorded() -> list[asyncpg.Record]:
        c = await asyncpg.connect(database_url)
        try:
            rows = await c.fetch("SELECT route->>'rule' AS rule FROM calls ORDER BY started_at")
        finally:
            await c.close()
        return rows if len(rows) == 2 else []

    rows = await eventually(recorded, timeout=15, what="both calls recorded")
    assert sorted(r["rule"] for r in rows) == ["everyone", "known"]
