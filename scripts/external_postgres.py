"""Run a command against an *external* PostgreSQL server given only by URL.

    python scripts/external_postgres.py CMD [ARGS...]

Starts the machine's own PostgreSQL server binaries (Debian's ``postgresql`` package, a different
build and major version from the embedded wheel) in a throwaway cluster on 127.0.0.1, exports
``PBX_ROUTER_TEST_DATABASE_URL`` for CMD, and stops and removes the cluster afterwards. The test
suite then creates its databases on that server purely through the URL, as it would on a
clinic's own database host. ``make test`` uses it for the database-heavy tests.

With no server binaries installed it installs Debian's ``postgresql`` when it can (root with
apt-get); otherwise it says so and exits 1.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = "PBX_ROUTER_TEST_DATABASE_URL"


def find_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def install_server() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    print("external_postgres: installing Debian's postgresql package", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=False, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    bindir = find_bindir()
    if bindir is None:
        install_server()
        bindir = find_bindir()
    if bindir is None:
        print("external_postgres: no PostgreSQL server binaries (apt-get install postgresql)", file=sys.stderr)
        return 1

    # PostgreSQL refuses to run as root: as root, the cluster belongs to the package's user.
    run_as: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            print("external_postgres: running as root but there is no 'postgres' user", file=sys.stderr)
            return 1
        run_as = ["runuser", "-u", "postgres", "--"]

    tmp = Path(tempfile.mkdtemp(prefix="pbx-router-extpg-"))
    data, sockdir = tmp / "data", tmp / "sock"
    sockdir.mkdir()
    if owner is not None:
        os.chmod(tmp, 0o755)
        for p in (tmp, sockdir):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    port = free_port()
    pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL)
        opts = f"-h 127.0.0.1 -p {port} -k {sockdir} -c fsync=off -c full_page_writes=off -c max_connections=300"
        subprocess.run([*pg_ctl, "-o", opts, "-l", str(tmp / "server.log"), "-w", "-t", "60", "start"],
                       check=True, stdout=subprocess.DEVNULL)
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
        print(f"external_postgres: {version} at {url}", file=sys.stderr, flush=True)
        started = time.monotonic()
        rc = subprocess.run(argv, env={**os.environ, ENV: url}).returncode
        print(f"external_postgres: command exited {rc} after {time.monotonic() - started:.0f}s", file=sys.stderr)
        return rc
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
