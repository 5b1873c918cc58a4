"""Private files: the data directory holds health information (call records, transcripts, the
spool), so it is 0700 and everything the daemon writes in it is 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pbx_router.log import get_logger

log = get_logger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


# Group *search* alone (g+x, 0710) is left: it lets no one list or read anything, and it is how
# the embedded PostgreSQL's own user reaches its directory when the daemon runs as root
# (store/embedded.py grants it). Group read/write and anything for others is taken away.
_TOO_OPEN_DIR = 0o067


def private_directory(path: Path) -> bool:
    """Create ``path`` as 0700, or tighten it to 0700 if group or others can list or write it
    (logged). Returns whether it had to be tightened."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & _TOO_OPEN_DIR == 0:
        return False
    os.chmod(path, PRIVATE_DIR)
    log.warning("permissions_tightened", path=str(path), was=f"{mode:04o}", now=f"{PRIVATE_DIR:04o}")
    return True


def private_file(path: Path) -> bool:
    """Tighten an existing file to 0600 if group or others may read it. Returns whether it had to."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077 == 0:
        return False
    os.chmod(path, PRIVATE_FILE)
    return True


def create_private_file(path: Path) -> None:
    """Create an empty file readable by the daemon's user only (a no-op if it exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
