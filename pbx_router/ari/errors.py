"""The ARI adapter's error tree. Call code catches by meaning, not by status code."""

from __future__ import annotations


class AriError(Exception):
    """Anything that went wrong talking to Asterisk."""

    def __init__(self, message: str, *, status: int | None = None, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f" ({self.method} {self.path} -> {self.status})" if self.method else ""
        return f"{self.message}{where}"


class AriGone(AriError):
    """404: the channel, bridge or playback no longer exists. After a hangup this is normal."""


class AriConflict(AriError):
    """409: the object exists already, or is in the wrong state (e.g. not in Stasis yet)."""


class AriBadRequest(AriError):
    """400/422: we sent something Asterisk will not accept (a bug on our side, or bad config)."""


class AriAuthError(AriError):
    """401/403: wrong ARI credentials."""


class AriServerError(AriError):
    """5xx: Asterisk failed (e.g. ``Allocation failed`` when dialling a missing endpoint)."""


class AriTimeout(AriError):
    """No answer within the request timeout."""


class AriUnavailable(AriError):
    """Asterisk cannot be reached at all (connection refused, reset, DNS)."""
