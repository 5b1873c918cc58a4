"""Poll the rules file and reload it when its content changes (SIGHUP wiring is in app.py)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from pbx_router.log import get_logger
from pbx_router.rules.holder import RulesHolder

log = get_logger(__name__)


def _fingerprint(path: Path) -> tuple[float, int, str] | None:
    try:
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return None
    return stat.st_mtime, stat.st_size, digest


async def watch_rules(
    holder: RulesHolder, path: str | Path | None = None, interval: float = 1.0
) -> None:
    """Run until cancelled. A cheap stat every ``interval`` s; the file is hashed only when its
    mtime or size moved, and reloaded only when its content hash differs from the last one seen
    (editors that touch without changing cost nothing). Parsing runs off the event loop."""
    target = Path(path) if path is not None else holder.path
    # Start from what is in force (RuleSet.version is the same content hash), not from the file
    # as it is now: an edit made between loading and watching must still be picked up.
    last_hash: str | None = holder.current.version
    last_stat: tuple[float, int] | None = None
    while True:
        await asyncio.sleep(interval)
        try:
            stat = target.stat()
            now_stat: tuple[float, int] | None = (stat.st_mtime, stat.st_size)
        except OSError:
            now_stat = None
        if now_stat == last_stat:
            continue
        last_stat = now_stat
        fp = await asyncio.to_thread(_fingerprint, target)
        if fp is None:
            log.warning("rules_file_missing", path=str(target))
            continue
        if fp[2] == last_hash:
            continue
        last_hash = fp[2]
        status = await asyncio.to_thread(holder.reload)
        log.info("rules_watch_reload", ok=status.ok, version=status.version)
