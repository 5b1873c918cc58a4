"""Opening the store: embedded server by default, an external one by URL; query helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from pbx_router.cli import main
from pbx_router.store import CallRecord, EmbeddedPostgres, Store, StoreError

from .helpers import T0, call, until


def _postmaster_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


async def test_without_url_the_embedded_server_keeps_data_in_data_dir(data_dir: Path) -> None:
    store = await Store.open(None, data_dir)
    try:
        assert (data_dir / "postgres" / "PG_VERSION").exists()
        assert str(data_dir / "postgres") in store.url  # unix socket in the data dir, no TCP
        assert await store.pool.fetchval("SHOW listen_addresses") == ""
        await store.calls.upsert(call(1))
        pid = store.embedded.postmaster_pid() if store.embedded else None
        assert pid is not None
    finally:
        await store.close()
    assert not _postmaster_alive(pid)  # close stopped the server we started

    again = await Store.open(None, data_dir)
    try:
        assert [c.call_id for c in await again.calls.list(10)] == ["call-0001"]
    finally:
        await again.close()


async def test_embedded_server_comes_back_after_an_unclean_stop(data_dir: Path) -> None:
    store = await Store.open(None, data_dir)
    await store.calls.upsert(call(1))
    assert store.embedded is not None
    pid = store.embedded.postmaster_pid()
    assert pid is not None
    store.pool.terminate()
    os.kill(pid, signal.SIGKILL)  # power cut: postmaster.pid stays behind
    await until(lambda: not _postmaster_alive(pid), what="postmaster to die")
    assert (data_dir / "postgres" / "postmaster.pid").exists()

    reopened = await Store.open(None, data_dir)
    try:
        assert (await reopened.calls.get("call-0001")) is not None
    finally:
        await reopened.close()


async def test_stale_pid_file_naming_an_unrelated_live_process_is_ignored(data_dir: Path) -> None:
    store = await Store.open(None, data_dir)
    await store.close()
    pid_file = data_dir / "postgres" / "postmaster.pid"
    # PID reuse after a reboot: the file names a live process that is not our postmaster.
    pid_file.write_text(f"{os.getpid()}\n{data_dir / 'postgres'}\n1700000000\n5432\n")

    reopened = await Store.open(None, data_dir)
    try:
        assert await reopened.calls.count() == 0
    finally:
        await reopened.close()


async def test_second_open_on_a_running_data_dir_attaches_and_leaves_it_running(
    data_dir: Path,
) -> None:
    daemon = await Store.open(None, data_dir)
    try:
        # e.g. `pbx-router migrate` run while the daemon is up
        migrate_tool = await Store.open(None, data_dir)
        assert migrate_tool.url == daemon.url
        await migrate_tool.close()
        await daemon.calls.upsert(call(3))  # the daemon's server is still there
        assert await daemon.calls.count() == 1
    finally:
        await daemon.close()


async def test_with_url_the_given_server_is_used_and_left_running(data_dir: Path) -> None:
    other = EmbeddedPostgres(data_dir / "postgres", unsafe_fast=True)
    other_url = await other.start()
    try:
        store = await Store.open(other_url, data_dir / "data")
        assert store.url == other_url
        assert store.embedded is None
        await store.calls.upsert(call(7))
        await store.close()
        assert not (data_dir / "data" / "postgres").exists()
        conn = await asyncpg.connect(other_url)  # still up: not ours to stop
        try:
            assert await conn.fetchval("SELECT count(*) FROM calls") == 1
        finally:
            await conn.close()
    finally:
        await other.stop()


async def test_unreachable_url_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(StoreError) as info:
        await Store.open("postgresql://clinic:s3cret@127.0.0.1:1/pbx", tmp_path, connect_timeout=2)
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


async def test_query_helpers_answer_what_rules_ask(store: Store) -> None:
    for n in range(1, 4):
        await store.calls.upsert(call(n, caller_number="+15550001111"))
    await store.calls.upsert(call(4, caller_number="+15550002222"))
    await store.calls.upsert(
        call(5, caller_number="+15550001111", started_at=T0 - timedelta(days=30))
    )

    assert await store.calls.recent_from("+15550001111", T0 - timedelta(days=7)) == 3
    assert await store.calls.recent_from("+15550001111", T0 - timedelta(days=31)) == 4
    assert await store.calls.recent_from("+15559999999", T0 - timedelta(days=31)) == 0
    assert await store.calls.recent_from("+15550002222", timedelta(days=3650)) == 1

    newest = await store.calls.list(2)
    assert [c.call_id for c in newest] == ["call-0004", "call-0003"]
    got = await store.calls.get("call-0002")
    assert isinstance(got, CallRecord)
    assert got.caller_name == "Caller 2" and got.started_at == T0 + timedelta(minutes=2)
    assert await store.calls.get("no-such-call") is None


def test_migrate_command_applies_then_reports_up_to_date(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--database-url", database_url, "--data-dir", str(tmp_path)]) == 0
    assert "0001_calls" in capsys.readouterr().out
    assert main(["migrate", "--database-url", database_url]) == 0
    assert "up to date" in capsys.readouterr().out


def test_migrate_command_failure_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["migrate", "--database-url", "postgresql://x:pw@127.0.0.1:1/db"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err and "pw@" not in err
    assert err.strip().startswith("pbx-router migrate: cannot connect")


async def test_server_orphaned_by_a_killed_process_is_adopted_and_stopped_on_close(
    data_dir: Path,
) -> None:
    # A daemon that starts the server and dies without closing: its postmaster lives on.
    crash = (
        "import os, sys; from pathlib import Path;"
        "from pbx_router.store.embedded import EmbeddedPostgres;"
        "EmbeddedPostgres(Path(sys.argv[1])).start_blocking(); os._exit(9)"
    )
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-c", crash, str(data_dir / "postgres"), stdout=asyncio.subprocess.DEVNULL
    )
    assert await daemon.wait() == 9
    orphan = EmbeddedPostgres(data_dir / "postgres").postmaster_pid()
    assert orphan is not None

    store = await Store.open(None, data_dir)
    assert store.embedded is not None and store.embedded.postmaster_pid() == orphan
    await store.close()
    assert not _postmaster_alive(orphan)
