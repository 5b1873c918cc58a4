"""``pbx-router override|agent|status`` against a live admin API (in process: the CLI blocks, so
it runs on a worker thread while the server answers on the test's event loop)."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from pbx_router.admin import AdminServer, InMemoryBackend
from pbx_router.cli import main

from .conftest import TOKEN, FakeClock

ENV_TOKEN = "PBX_ROUTER_ADMIN_TOKEN"


@pytest.fixture(autouse=True)
def _no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_TOKEN, raising=False)


@pytest.fixture(autouse=True)
def _server_logs_elsewhere() -> Iterator[io.StringIO]:
    """The server runs in this process: keep its log lines out of the CLI's captured output."""
    saved = structlog.get_config()
    sink = io.StringIO()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sink))
    yield sink
    structlog.configure(**saved)


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def where(server: AdminServer) -> list[str]:
    return ["--url", server.url, "--token", TOKEN]


async def test_override_add_list_cancel(
    server: AdminServer, backend: InMemoryBackend, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await cli(capsys, "override", "add", "--kind", "close_queue", "--scope", "frontdesk",
                               "--reason", "fire drill", "--author", "Dana", "--ttl", "1h30m", *where(server))
    assert (code, err) == (0, "")
    (override,) = backend.overrides_view()
    assert out.startswith(f"override {override['id']}: close_queue frontdesk until ")
    assert override["expires_at"] == (clock.now + dt.timedelta(minutes=90)).isoformat()

    code, out, _ = await cli(capsys, "override", "list", *where(server))
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "KIND", "SCOPE", "TARGET", "UNTIL", "AUTHOR", "REASON"]
    assert row.startswith(override["id"]) and "fire drill" in row and "Dana" in row

    code, out, _ = await cli(capsys, "override", "list", "--json", *where(server))
    assert json.loads(out) == [override]

    clock.advance(minutes=1)
    code, out, err = await cli(capsys, "override", "cancel", override["id"][:8], "--reason", "drill over",
                               "--author", "Dana", *where(server))
    assert (code, out.strip(), err) == (0, f"override {override['id']} cancelled", "")
    assert backend.overrides_view() == []
    code, out, _ = await cli(capsys, "override", "list", *where(server))
    assert (code, out.strip()) == (0, "no overrides in force")


async def test_override_add_with_until_and_a_target(
    server: AdminServer, backend: InMemoryBackend, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    until = clock.now.replace(hour=17).isoformat()
    code, out, _ = await cli(capsys, "override", "add", "--kind", "redirect_intent", "--scope", "prescription_refill",
                             "--target", "nurse_line", "--reason", "pharmacist out", "--author", "Dana",
                             "--until", until, "--json", *where(server))
    assert code == 0
    created = json.loads(out)
    assert (created["target"], created["expires_at"]) == ("nurse_line", until)
    assert backend.overrides_view() == [created]


async def test_api_refusals_are_one_line_errors(server: AdminServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await cli(capsys, "override", "add", "--kind", "close_queue", "--scope", "cardiology",
                               "--reason", "r", "--author", "a", "--ttl", "1h", *where(server))
    assert (code, out) == (1, "")
    assert err.strip() == "pbx-router: no queue 'cardiology' (queues: frontdesk, billing) (HTTP 422)"

    code, _, err = await cli(capsys, "override", "add", "--kind", "close_queue", "--scope", "frontdesk",
                             "--reason", "r", "--author", "a", "--ttl", "30d", *where(server))
    assert code == 1 and "limit of 7 days" in err and len(err.splitlines()) == 1

    code, _, err = await cli(capsys, "override", "cancel", "abcd1234", "--reason", "r", *where(server))
    assert code == 1 and "no override in force has an id starting with 'abcd1234'" in err


async def test_a_wrong_or_missing_token_is_a_one_line_error(
    server: AdminServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for token_args in (["--token", "nope-nope-nope-nope"], []):
        code, out, err = await cli(capsys, "override", "list", "--url", server.url, *token_args)
        assert (code, out) == (1, "")
        assert "refused the token" in err and "Traceback" not in err and len(err.splitlines()) == 1


async def test_no_daemon_running_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = await cli(capsys, "status", "--url", f"http://127.0.0.1:{port}", "--token", TOKEN)
    assert (code, out) == (1, "")
    assert "cannot reach the admin API" in err and "is the daemon running?" in err
    assert len(err.splitlines()) == 1


async def test_agent_presence_and_list(
    server: AdminServer, backend: InMemoryBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await cli(capsys, "agent", "presence", "PJSIP/agent1", "paused", "--reason", "lunch",
                               "--ttl", "45m", "--author", "Ann", *where(server))
    assert (code, out.strip(), err) == (0, "PJSIP/agent1: paused (paused)", "")
    (override,) = backend.overrides_view()
    assert (override["author"], override["reason"]) == ("Ann", "lunch")

    code, out, _ = await cli(capsys, "agent", "list", *where(server))
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "paused (override)" in rows["PJSIP/agent1"]
    assert "logged_in" in rows["PJSIP/agent2"] and "override" not in rows["PJSIP/agent2"]

    code, _, err = await cli(capsys, "agent", "presence", "PJSIP/ghost", "paused", *where(server))
    assert code == 1 and "no agent 'PJSIP/ghost'" in err


async def test_status_reports_readiness_and_exits_1_when_not_ready(
    server: AdminServer, backend: InMemoryBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await cli(capsys, "status", *where(server))
    assert code == 0
    assert "ready:        yes" in out and "frontdesk" in out and "billing" in out

    backend.ready = False
    backend.ari = {"connected": False}
    code, out, _ = await cli(capsys, "status", *where(server))
    assert code == 1
    assert "ready:        NO" in out and "asterisk:     NOT connected" in out


async def test_token_from_the_environment(
    server: AdminServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_TOKEN, TOKEN)
    code, _, err = await cli(capsys, "agent", "list", "--url", server.url)
    assert (code, err) == (0, "")


async def test_address_and_token_from_the_daemon_config(
    backend: InMemoryBackend, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # the config names a port: find a free one, then listen on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "pbx-router.yaml"
    config.write_text(f"admin:\n  host: 127.0.0.1\n  port: {port}\n  token: {TOKEN}\n", encoding="utf-8")
    async with AdminServer(backend, port=port, token=TOKEN, clock=clock):
        code, out, err = await cli(capsys, "agent", "list", "-c", str(config))
    assert (code, err) == (0, "")
    assert "PJSIP/agent1" in out

    config.write_text("admin:\n  prot: 1\n", encoding="utf-8")
    code, _, err = await cli(capsys, "status", "-c", str(config))
    assert code == 1 and "configuration is not valid" in err and "admin.prot" in err


@pytest.mark.parametrize("argv", [
    ["override", "add", "--kind", "close_queue", "--scope", "q", "--reason", "r", "--author", "a"],  # no expiry
    ["override", "add", "--kind", "close_queue", "--scope", "q", "--reason", "r", "--author", "a", "--ttl", "soon"],
    ["override", "add", "--kind", "close_queue", "--scope", "q", "--reason", "r", "--author", "a",
     "--ttl", "1h", "--until", "2026-03-02T18:00"],
    ["agent", "presence", "PJSIP/agent1", "asleep"],
])
def test_usage_errors_exit_2_without_contacting_anyone(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err
