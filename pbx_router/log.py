"""structlog setup: contextvars first (``call_id`` bound once per call), PHI redaction, JSON in
production and a readable console on a TTY.

Phone numbers, dates of birth and transcripts are health information: above DEBUG they are
replaced with ``"[redacted]"`` wherever they appear as a known key, and digit runs that look like
phone numbers or dates are masked inside any string value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SENSITIVE_KEYS = frozenset(
    {
        "caller",
        "caller_number",
        "caller_name",
        "callerid",
        "number",
        "phone",
        "dob",
        "date_of_birth",
        "transcript",
        "text",
        "partial",
        "utterance",
        "words",
        "body",
        "digits",
        "patient",
        "patient_name",
    }
)
REDACTED = "[redacted]"
# Our own identifiers and times: never health information, and needed to follow a call.
_NOT_PHI = frozenset({"timestamp", "event", "level", "logger", "id"})
# Phone numbers (+15551234567, (555) 123-4567, 555-123-4567, 7+ digit runs such as keypad DOBs)
# and dates (03/14/1980, 1980-03-14). Dotted quads (IP addresses) are left alone.
_PHONE_OR_DATE = re.compile(
    r"\+\d[\d\s\-]{5,}\d"
    r"|\(?\b\d{3}\)?[\s\-]\d{3}[\s\-]\d{4}\b"
    r"|(?<![\d.])\d{7,}(?![\d.])"
    r"|\b\d{1,2}[/\-]\d{1,2}[/\-]\d{2,4}\b"
    r"|\b\d{4}-\d{2}-\d{2}\b"
)


def _mask(value: str) -> str:
    return _PHONE_OR_DATE.sub(REDACTED, value)


def redact_phi(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: keep PHI out of every line logged above DEBUG."""
    level = event_dict.get("level", method_name)
    if level == "debug":
        return event_dict
    for key in list(event_dict):
        if key in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(event_dict[key], str) and key not in _NOT_PHI and not key.endswith("_id"):
            event_dict[key] = _mask(event_dict[key])
    return event_dict


def configure(level: str = "info", json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger once, at process start."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_phi,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr)


def get_logger(name: str | None = None, **initial: Any) -> Any:
    return structlog.get_logger(name, **initial) if name else structlog.get_logger(**initial)
