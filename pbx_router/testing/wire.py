"""JSON shapes exactly as Asterisk 22.10.1 puts them on the wire (see ari-samples/*/events.jsonl).

Key order follows the recordings: most events start with ``type``/``timestamp``, but Asterisk puts
some event-specific fields (``variable``/``value``, ``cause``/``soft``, ``duration``) first.
"""

from __future__ import annotations

import time
from typing import Any

ASTERISK_ID = "02:fc:00:00:00:01"
ASTERISK_VERSION = "22.10.1"
SERVER_HEADER = f"Asterisk/{ASTERISK_VERSION}"

# Fields Asterisk serialises before "type" (ChannelVarset, ChannelHangupRequest, ...).
_LEADING_FIELDS = frozenset({"variable", "value", "cause", "soft", "tech_cause", "duration"})


def timestamp(at: float | None = None) -> str:
    """``2026-11-27T08:12:20.876+0000``: millisecond precision, numeric UTC offset."""
    at = time.time() if at is None else at
    millis = int(round((at - int(at)) * 1000))
    whole = int(at)
    if millis == 1000:
        whole, millis = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}+0000"


def event(event_type: str, application: str, **fields: Any) -> dict[str, Any]:
    """An event object; ``channel``/``peer``/``bridge``/``playback`` go after scalar fields."""
    leading = {k: v for k, v in fields.items() if k in _LEADING_FIELDS}
    body: dict[str, Any] = dict(leading)
    body["type"] = event_type
    body["timestamp"] = timestamp()
    for key, value in fields.items():
        if key not in _LEADING_FIELDS:
            body[key] = value
    body["asterisk_id"] = ASTERISK_ID
    body["application"] = application
    return body


def error(message: str) -> dict[str, str]:
    return {"message": message}


HTML_NOT_FOUND = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html><head>\r\n'
    "<title>404 Not Found</title>\r\n</head><body>\r\n<h1>Not Found</h1>\r\n"
    "<p>The requested URL was not found on this server.</p>\r\n<hr />\r\n"
    f"<address>{SERVER_HEADER}</address>\r\n</body></html>\r\n"
)
HTML_MISSING_APP = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html><head>\r\n'
    "<title>400 Bad Request</title>\r\n</head><body>\r\n<h1>Bad Request</h1>\r\n"
    "<p>HTTP request is missing param: [app]</p>\r\n<hr />\r\n"
    f"<address>{SERVER_HEADER}</address>\r\n</body></html>\r\n"
)
