"""Hot reload: validate a new rules file, then swap it in atomically, or keep the old one.

A call takes ``holder.current`` once when it starts and keeps that RuleSet for its whole life,
so a reload never changes the rules under a call in progress.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pbx_router.log import get_logger
from pbx_router.rules.loader import RulesError, RuleSet, load_rules

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    ok: bool
    errors: tuple[str, ...] = ()
    loaded_at: dt.datetime | None = None  # when the rules now in force were loaded
    version: str | None = None  # version now in force
    attempted_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    warnings: tuple[str, ...] = ()
    # Parts of the file now in force that the running daemon cannot apply without a restart
    # (e.g. ``queues:``): one line each, empty when everything took effect.
    restart_required: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "loaded_at": self.loaded_at.isoformat() if self.loaded_at else None,
            "version": self.version,
            "attempted_at": self.attempted_at.isoformat(),
            "restart_required": list(self.restart_required),
        }


RestartCheck = Callable[[RuleSet], tuple[str, ...]]


class RulesHolder:
    """Owns the rules in force. ``current`` is a plain attribute read (atomic); ``reload`` is
    serialised by a lock and may run on a worker thread (``asyncio.to_thread``).

    ``restart_check`` (set by the daemon once its services run, see :meth:`check_restart_with`)
    says which parts of a new file the running services cannot take without a restart; a reload
    still swaps the rules, and its status and log say what waits for the restart."""

    def __init__(self, path: str | Path, initial: RuleSet | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # The daemon cannot answer calls without rules: an invalid file at start-up raises.
        self._current: RuleSet = (
            initial if initial is not None else load_rules(self.path)
        )
        # Build the matcher (classifier training or cache load, ~1 s) now, not in the first
        # caller's turn.
        _ = self._current.matcher
        self.status = ReloadStatus(
            True,
            (),
            self._current.loaded_at,
            self._current.version,
            warnings=tuple(self._current.warnings),
        )
        self._restart_check: RestartCheck | None = None

    def check_restart_with(self, check: RestartCheck) -> None:
        self._restart_check = check

    @property
    def current(self) -> RuleSet:
        return self._current

    def reload(self) -> ReloadStatus:
        with self._lock:
            try:
                fresh = load_rules(self.path)
            except RulesError as exc:
                old = self._current
                self.status = ReloadStatus(
                    False, tuple(exc.errors), old.loaded_at, old.version
                )
                log.error(
                    "rules_reload_rejected",
                    path=str(self.path),
                    errors=len(exc.errors),
                    first_error=exc.errors[0] if exc.errors else "",
                    version_in_force=old.version,
                )
                for line in exc.errors:
                    log.warning("rules_error", detail=line)
                return self.status
            _ = fresh.matcher  # trained here, on the reload thread, before any call sees it
            previous = self._current.version
            self._current = (
                fresh  # one reference assignment: readers see old or new, never a mix
            )
            restart = self._restart_check(fresh) if self._restart_check is not None else ()
            self.status = ReloadStatus(
                True, (), fresh.loaded_at, fresh.version, warnings=tuple(fresh.warnings),
                restart_required=restart,
            )
            for line in restart:
                log.warning("rules_reload_restart_required", path=str(self.path), detail=line)
            log.info(
                "rules_reloaded",
                path=str(self.path),
                version=fresh.version,
                previous=previous,
                rules=len(fresh.rules),
                warnings=len(fresh.warnings),
            )
            return self.status
