"""Request bodies of the admin API: parsed and validated here, pure (no aiohttp, no clock).

Every problem raises :class:`InvalidRequestError` with a message an admin can act on. Expiry is
mandatory for overrides and bounded (``MAX_OVERRIDE_TTL``): a forgotten override must not route
calls for ever, and a typo ("70 days" for "7 hours") must not do so for months.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from pbx_router.admin.errors import InvalidRequestError
from pbx_router.queues.model import PRESENCES
from pbx_router.queues.overrides import MAX_TEXT, OVERRIDE_KINDS, Override, OverrideKind

MAX_OVERRIDE_TTL = dt.timedelta(days=7)
# A presence change without an expiry lasts a working shift; the agent is then back to the
# presence the daemon tracks on its own.
DEFAULT_PRESENCE_TTL = dt.timedelta(hours=12)

_OVERRIDE_FIELDS = frozenset({"kind", "scope", "target", "author", "reason", "expires_at", "ttl_minutes"})
_CANCEL_FIELDS = frozenset({"author", "reason"})
_PRESENCE_FIELDS = frozenset({"presence", "author", "reason", "expires_at", "ttl_minutes"})
_CALLBACK_FIELDS = frozenset({"author", "note"})


@dataclass(frozen=True, slots=True)
class CallbackAction:
    """Who claims or completes a callback request (the token is shared, so the author is named
    in the body: the CLI sends --author or the login name), and an optional note on completion."""

    author: str
    note: str | None = None


def parse_callback_action(body: Any) -> CallbackAction:
    fields = _object(body, _CALLBACK_FIELDS)
    return CallbackAction(author=_text(fields, "author"), note=_optional_text(fields, "note"))


@dataclass(frozen=True, slots=True)
class CancelRequest:
    author: str
    reason: str


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    presence: str
    author: str
    reason: str
    expires_at: dt.datetime


def _object(body: Any, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequestError(f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return body


def _optional_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a string")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise InvalidRequestError(f"{name} is longer than {MAX_TEXT} characters")
    return value or None


def _text(body: Mapping[str, Any], name: str) -> str:
    value = _optional_text(body, name)
    if value is None:
        raise InvalidRequestError(f"{name} is required (a non-empty string)")
    return value


def parse_expiry(
    body: Mapping[str, Any], now: dt.datetime, default: dt.timedelta | None = None
) -> dt.datetime:
    """``expires_at`` (ISO 8601 with an offset) or ``ttl_minutes`` (a number); exactly one,
    unless ``default`` supplies a TTL when both are absent."""
    has_at, has_ttl = body.get("expires_at") is not None, body.get("ttl_minutes") is not None
    if has_at and has_ttl:
        raise InvalidRequestError("give expires_at or ttl_minutes, not both")
    if has_at:
        raw = body["expires_at"]
        if not isinstance(raw, str):
            raise InvalidRequestError("expires_at must be an ISO 8601 string, e.g. 2026-03-02T18:00:00+01:00")
        try:
            expires = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            raise InvalidRequestError(
                f"expires_at {raw!r} is not an ISO 8601 date-time (e.g. 2026-03-02T18:00:00+01:00)"
            ) from None
        if expires.tzinfo is None or expires.utcoffset() is None:
            raise InvalidRequestError("expires_at must include a UTC offset (e.g. +01:00 or Z)")
    elif has_ttl:
        ttl = body["ttl_minutes"]
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl):
            raise InvalidRequestError("ttl_minutes must be a number of minutes")
        if ttl <= 0:
            raise InvalidRequestError("ttl_minutes must be greater than 0")
        if ttl > MAX_OVERRIDE_TTL.total_seconds() / 60:
            raise InvalidRequestError(f"ttl_minutes is longer than the limit of {_describe(MAX_OVERRIDE_TTL)}")
        expires = now + dt.timedelta(minutes=ttl)
    elif default is not None:
        expires = now + default
    else:
        raise InvalidRequestError("an expiry is required: expires_at or ttl_minutes")
    if expires <= now:
        raise InvalidRequestError("expires_at is in the past")
    if expires - now > MAX_OVERRIDE_TTL:
        raise InvalidRequestError(f"expires_at is further away than the limit of {_describe(MAX_OVERRIDE_TTL)}")
    return expires


def _describe(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{delta.total_seconds() / 3600:g} hours"


def parse_new_override(body: Any, now: dt.datetime) -> Override:
    """``POST /api/overrides``: kind, scope, target?, author, reason, expires_at | ttl_minutes."""
    data = _object(body, _OVERRIDE_FIELDS)
    kind = _optional_text(data, "kind")
    if kind is None or kind not in OVERRIDE_KINDS:
        raise InvalidRequestError(f"kind must be one of {', '.join(OVERRIDE_KINDS)}")
    scope = _optional_text(data, "scope") or ("all" if kind == "after_hours" else None)
    if scope is None:
        raise InvalidRequestError("scope is required (a queue, an intent, an agent endpoint, or 'all')")
    author = _text(data, "author")
    reason = _text(data, "reason")
    expires = parse_expiry(data, now)
    try:
        return Override(
            kind=cast(OverrideKind, kind),  # checked against OVERRIDE_KINDS above
            scope=scope,
            target=_optional_text(data, "target"),
            author=author,
            reason=reason,
            created_at=now,
            expires_at=expires,
        )
    except ValueError as exc:  # the domain's own rules (target needed, after_hours scope, ...)
        raise InvalidRequestError(str(exc)) from None


def parse_cancel(body: Any) -> CancelRequest:
    """``DELETE /api/overrides/{id}``: author and reason."""
    data = _object(body, _CANCEL_FIELDS)
    return CancelRequest(author=_text(data, "author"), reason=_text(data, "reason"))


def parse_presence(body: Any, now: dt.datetime) -> PresenceRequest:
    """``PUT /api/agents/{endpoint}/presence``: presence, author, reason, expiry (default a shift)."""
    data = _object(body, _PRESENCE_FIELDS)
    presence = _optional_text(data, "presence")
    if presence is None or presence not in PRESENCES:
        raise InvalidRequestError(f"presence must be one of {', '.join(PRESENCES)}")
    return PresenceRequest(
        presence=presence,
        author=_text(data, "author"),
        reason=_text(data, "reason"),
        expires_at=parse_expiry(data, now, DEFAULT_PRESENCE_TTL),
    )
