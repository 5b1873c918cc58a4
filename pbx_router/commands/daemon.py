"""``pbx-router run`` and ``pbx-router check-config``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

from pbx_router.config import Config, ConfigError, load_config
from pbx_router.startup import ExitCode, StartupError

EXIT_BAD_CONFIG = ExitCode.CONFIG
# Once the daemon has decided to exit, the interpreter gets this long to finish (a thread still
# busy in a recogniser or loading rules would otherwise hold the process at exit).
EXIT_GRACE_S = 3.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = sub.add_parser("run", help="run the daemon against Asterisk (production)")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="pbx-router.yaml")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a daemon config file (exit 0 valid, 1 not)")
    check.add_argument("file", metavar="FILE")
    check.set_defaults(func=cmd_check_config)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s)", file=sys.stderr)
        return 1
    if cfg.rules:
        from pbx_router.rules import RulesError, load_rules

        try:
            load_rules(cfg.rules)
        except RulesError as exc:
            for line in exc.errors:
                print(line, file=sys.stderr)
            print(f"{len(exc.errors)} error(s) in the rules file {cfg.rules}", file=sys.stderr)
            return 1
    print(f"{args.file}: OK (ARI {cfg.ari.url} app {cfg.ari.app}; database "
          f"{'embedded in ' + cfg.data_dir if not cfg.database.url else 'external'}; "
          f"rules {cfg.rules or 'none: every call takes calls.default_route'})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print("pbx-router: configuration is not valid, not starting:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    if cfg.rules:
        from pbx_router.rules import RulesError, load_rules

        try:
            load_rules(cfg.rules)
        except RulesError as exc:
            print("pbx-router: routing rules are not valid, not starting:", file=sys.stderr)
            for line in exc.errors:
                print(f"  {line}", file=sys.stderr)
            return EXIT_BAD_CONFIG

    from pbx_router import log

    log.configure(cfg.log.level, json={"auto": None, "json": True, "console": False}[cfg.log.format])
    # Whatever the daemon writes (spool, data directory, caches) holds or sits next to health
    # information: nobody but its own user reads it. The spool and data directory also set their
    # modes explicitly, for App used in-process (tests, the demo).
    os.umask(0o077)
    watchdog = ExitDeadline()
    try:
        return int(asyncio.run(_run_daemon(cfg, watchdog)))
    except KeyboardInterrupt:  # ^C before the daemon's own handler is installed
        return int(ExitCode.OK)


async def _run_daemon(cfg: Config, watchdog: ExitDeadline) -> ExitCode:
    """The daemon; its exit code. A start-up failure is one line on stderr, never a traceback."""
    from pbx_router.app import SHUTDOWN_MARGIN_S, App
    from pbx_router.log import get_logger

    budget = cfg.shutdown.drain_timeout + SHUTDOWN_MARGIN_S
    app = App(cfg, on_stop_requested=lambda: watchdog.arm(
        budget, ExitCode.SHUTDOWN_OVERRAN,
        f"pbx-router: stopping took longer than {budget:g} s (shutdown.drain_timeout + {SHUTDOWN_MARGIN_S:g} s); "
        "exiting now"))
    code = ExitCode.UNEXPECTED
    try:
        await app.run()
        code = ExitCode.OK
    except StartupError as exc:
        code = exc.exit_code
        print(f"pbx-router: cannot start: {exc}", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - a bug: logged with its traceback, then a clear exit
        get_logger("pbx_router.daemon").exception("daemon_failed", error=type(exc).__name__)
        print(f"pbx-router: stopped by an unexpected error ({type(exc).__name__}); see the log above",
              file=sys.stderr, flush=True)
    finally:
        watchdog.arm(EXIT_GRACE_S, code)
    return code


class ExitDeadline:
    """The last line of defence against a hang: once armed, the process exits by the deadline
    even if the event loop or interpreter shutdown is stuck (a thread that never returns, a
    task that swallowed its cancellation). A daemon thread, so it never delays a clean exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._code = ExitCode.UNEXPECTED
        self._message: str | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, code: ExitCode, message: str | None = None) -> None:
        """Exit with ``code`` (printing ``message``) in ``seconds`` at the latest; an earlier
        deadline stands, the newest code and message win."""
        with self._lock:
            deadline = time.monotonic() + seconds
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
            self._code, self._message = code, message
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="exit-deadline", daemon=True)
                self._thread.start()
        self._wake.set()

    def _watch(self) -> None:
        while True:
            with self._lock:
                assert self._deadline is not None
                left = self._deadline - time.monotonic()
            if left <= 0:
                break
            self._wake.wait(left)
            self._wake.clear()
        with self._lock:
            code, message = self._code, self._message
        if message:
            print(message, file=sys.stderr, flush=True)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(int(code))
