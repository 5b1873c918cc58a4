"""Run as root, the embedded PostgreSQL runs as a dedicated unprivileged user made once, gets only
its own directories, and never opens up a directory above the data directory: a blocked one is a
clear error instead. (Root only: this sandbox runs the suite as root; elsewhere it is skipped.)"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx_router.store import EmbeddedPostgres, EmbeddedPostgresError
from pbx_router.store.embedded import SYSTEM_USER_ENV, postgres_bin_dir
from pbx_router.store.testing import scratch_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (what it changes as root is the point)")


@pytest.fixture
def fresh_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server user name nobody has yet, and a useradd on PATH that counts its runs (then runs
    the real one); the user and its group are removed afterwards."""
    name = f"pbxr-pg-{uuid.uuid4().hex[:8]}"
    real = next(p for p in ("/usr/sbin/useradd", "/sbin/useradd") if Path(p).exists())
    shim = tmp_path / "bin"
    shim.mkdir()
    runs = tmp_path / "useradd-runs"
    (shim / "useradd").write_text(f'#!/bin/sh\necho "$@" >> {runs}\nexec {real} "$@"\n')
    (shim / "useradd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setenv(SYSTEM_USER_ENV, name)
    try:
        yield name, runs
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


def modes(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {p: (stat.S_IMODE(p.stat().st_mode), p.stat().st_uid, p.stat().st_gid) for p in paths}


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_the_server_user_is_made_once_and_only_our_directories_change(fresh_user: tuple[str, Path]) -> None:
    name, runs = fresh_user
    bin_dir = postgres_bin_dir()
    with scratch_dir() as data_dir:  # 0700 root:root, as a data directory should be
        above = [*data_dir.parents, *bin_dir.parents, bin_dir]
        before = modes(above)
        server = EmbeddedPostgres(data_dir / "postgres", unsafe_fast=True)
        server.start_blocking()
        try:
            user = pwd.getpwnam(name)
            assert grp.getgrgid(user.pw_gid).gr_name == name  # its own group
            assert user.pw_shell.endswith(("nologin", "false"))
            pid = server.postmaster_pid()
            assert pid is not None and process_uid(pid) == user.pw_uid  # not root
            # Its own directory: the cluster, 0700, owned by the server user.
            assert modes([data_dir / "postgres"])[data_dir / "postgres"] == (0o700, user.pw_uid, user.pw_gid)
            # Our data directory: still root's, only its group may now pass (no read, no o+x).
            assert modes([data_dir])[data_dir] == (0o710, 0, user.pw_gid)
            # Nothing above it, and nothing on the way to the PostgreSQL programs, changed.
            assert modes(above) == before
        finally:
            server.stop_blocking()

        again = EmbeddedPostgres(data_dir / "postgres", unsafe_fast=True)
        again.start_blocking()  # a restart: the user exists, so no useradd
        again.stop_blocking()
    assert len(runs.read_text().splitlines()) == 1


def test_a_blocked_directory_above_the_data_directory_is_an_error_and_left_alone(
    fresh_user: tuple[str, Path],
) -> None:
    with scratch_dir() as base:
        blocked = base / "private"
        blocked.mkdir(mode=0o700)  # say /root: not ours to open up
        base.chmod(0o755)
        before = modes([base, blocked])
        server = EmbeddedPostgres(blocked / "data" / "postgres", unsafe_fast=True)
        with pytest.raises(EmbeddedPostgresError) as info:
            server.start_blocking()
        message = str(info.value)
        assert f"cannot enter {blocked} (mode 0700)" in message and fresh_user[0] in message
        assert "data_dir" in message  # says what to do
        assert modes([base, blocked]) == before
        assert not (blocked / "data" / "postgres").exists()


def test_an_existing_cluster_keeps_running_as_its_owner(fresh_user: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = fresh_user
    with scratch_dir() as data_dir:
        first = EmbeddedPostgres(data_dir / "postgres", unsafe_fast=True)
        first.start_blocking()
        first.stop_blocking()
        owner = (data_dir / "postgres").stat().st_uid
        # An older pbx-router made it under another user name: the files are not re-owned.
        monkeypatch.delenv(SYSTEM_USER_ENV)
        later = EmbeddedPostgres(data_dir / "postgres", unsafe_fast=True)
        later.start_blocking()
        try:
            pid = later.postmaster_pid()
            assert pid is not None and process_uid(pid) == owner == pwd.getpwnam(name).pw_uid
            assert all(p.stat().st_uid == owner for p in (data_dir / "postgres").iterdir()
                       if p.name not in ("postmaster.pid",))
        finally:
            later.stop_blocking()
