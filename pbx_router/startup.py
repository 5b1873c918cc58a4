"""Why the daemon could not start, as an exit code a supervisor (systemd, Docker) can act on.

``App.run()`` raises :class:`StartupError` for a cause it knows before serving; ``pbx-router
run`` prints ``pbx-router: cannot start: <message>`` (one line, stderr) and exits with its code.
The codes are documented in the README; a code, once published, keeps its meaning.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0  # stopped on request (SIGTERM/SIGINT), also during start-up
    UNEXPECTED = 1  # a bug: the traceback is in the log
    CONFIG = 2  # the config or routing rules file is invalid
    LISTEN = 3  # a listening address is in use or cannot be bound (admin API, RTP range)
    DATA_DIR = 4  # the data directory (record spool, embedded database) cannot be written
    ARI_AUTH = 5  # Asterisk refused the ARI credentials
    SPEECH = 6  # the speech recogniser could not be started
    SHUTDOWN_OVERRAN = 7  # stopping took longer than shutdown.drain_timeout + the margin: forced


class StartupError(Exception):
    """The daemon cannot start; ``str(exc)`` is the one line an operator reads."""

    def __init__(self, exit_code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
