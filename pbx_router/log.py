"""structlog setup: contextvars first (``call_id`` bound once per call), PHI redaction, JSON in
production and a readable console on a TTY.

This module is the one owner of what may be logged. Phone numbers, dates of birth and
transcripts are health information; above DEBUG:

- values under a known key (``caller_number``, ``dob``, ``transcript``, ``text``, ...) are
  replaced with ``"[redacted]"``, at any depth inside dicts, lists, tuples and sets, and each such
  value is also scrubbed from every other string of the same line;
- digit runs shaped like phone numbers (E.164 and the usual US forms) and dates (numeric and
  month-name forms) are masked inside every other string, including the event text of
  standard-library records and rendered tracebacks;
- exceptions are rendered *before* redaction, and an exception's message is withheld (only its
  type, its SQLSTATE if any, and the frames are kept), because a message can quote any value,
  a name or a transcript included. OS errors keep their (masked) message: it comes from the
  operating system and says what operations needs to know.

Lines logged at DEBUG are shown as they are, and with ``log.level: debug`` exception messages
are shown on every line (numbers and dates in them still masked above DEBUG): an admin who
chose that level chose a log that holds health information.

Standard-library logging (asyncio, asyncpg, aiohttp, warnings...) goes through the same chain via
``structlog.stdlib.ProcessorFormatter`` on the root logger, and uncaught exceptions in the main
thread or in worker threads are logged through it too, so nothing reaches stderr unredacted.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from types import TracebackType
from typing import Any, TextIO

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
        "birth_date",
        "birthdate",
        "mrn",
        "transcript",
        "transcripts",
        "text",
        "partial",
        "alternatives",
        "hypothesis",
        "utterance",
        "heard",
        "words",
        "body",
        "digits",
        "patient",
        "patient_name",
    }
)
REDACTED = "[redacted]"
WITHHELD = "[message withheld above DEBUG]"
# Our own identifiers and times: never health information, and needed to follow a call.
_NOT_PHI = frozenset({"timestamp", "level", "logger", "id"})
# structlog's bookkeeping on standard-library records (removed before rendering).
_META = frozenset({"_record", "_from_structlog"})
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Phone numbers: +15551234567, +1 555 123 4567, (555) 123-4567, 555-123-4567, 555.123.4567,
# 555-1234, and any run of 7+ digits (keypad entries such as a DOB typed as 03141980).
# Dates: 03/14/1980, 3-14-80, 14.03.1980, 1980-03-14, March 14, 1980, 14 Mar 1980.
# Dotted quads (IP addresses) and dotted channel ids (1796156068.22) are left alone.
_PHONE_OR_DATE = re.compile(
    r"\+\d[\d\s\-().]{5,}\d"
    r"|\(?\b\d{3}\)?[\s\-.]\d{3}[\s\-.]\d{4}\b"
    r"|\b\d{3}-\d{4}\b"
    r"|(?<![\d.])\d{7,}(?![\d.])"
    r"|\b\d{1,2}[/\-]\d{1,2}[/\-]\d{2,4}\b"
    r"|\b\d{1,2}\.\d{1,2}\.\d{4}\b"
    r"|\b\d{4}-\d{2}-\d{2}\b"
    rf"|\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{2,4}}\b",
    re.IGNORECASE,
)
# Exceptions whose message is safe to show above DEBUG: written by the OS or the runtime, not
# built from our data (still masked like any other text).
_SAFE_MESSAGE = (OSError, EOFError, KeyboardInterrupt, SystemExit)
_SCRUB_MIN_LEN = 4  # a sensitive value shorter than this is not hunted down in other strings

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _mask(value: str) -> str:
    return _PHONE_OR_DATE.sub(REDACTED, value)


def _is_debug(method_name: str, event_dict: MutableMapping[str, Any]) -> bool:
    return str(event_dict.get("level", method_name)).lower() == "debug"


# --- exceptions ----------------------------------------------------------------------------------


def _exc_info(value: Any) -> ExcInfo | None:
    if value is None or value is False:
        return None
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and value[0] is not None:
        return value
    info = sys.exc_info()
    return info if info[0] is not None else None


def _withhold(te: traceback.TracebackException, exc: BaseException | None, seen: set[int]) -> None:
    """Replace the message of ``te`` and of every exception chained to it."""
    if id(te) in seen:
        return
    seen.add(id(te))
    if exc is None or not isinstance(exc, _SAFE_MESSAGE):
        sqlstate = getattr(exc, "sqlstate", None)
        # TracebackException keeps the message in ``_str`` (3.11-3.13) and prints it from there.
        # setattr: the type stubs do not declare this private attribute.
        setattr(te, "_str", f"{WITHHELD} (SQLSTATE {sqlstate})" if isinstance(sqlstate, str) else WITHHELD)  # noqa: B010
        if getattr(te, "__notes__", None):
            te.__notes__ = None  # add_note() text can quote data as well
        if isinstance(exc, SyntaxError):
            # The offending source line, which may be data (a YAML or JSON value). typeshed types it
            # str, but None is what the runtime keeps when there is no line, and prints nothing for.
            te.text = None  # type: ignore[assignment]
    if te.__cause__ is not None:
        _withhold(te.__cause__, exc.__cause__ if exc is not None else None, seen)
    if te.__context__ is not None:
        _withhold(te.__context__, exc.__context__ if exc is not None else None, seen)
    for i, inner in enumerate(getattr(te, "exceptions", None) or ()):
        members = getattr(exc, "exceptions", ())
        _withhold(inner, members[i] if i < len(members) else None, seen)


def format_exception(info: ExcInfo, *, with_messages: bool) -> str:
    """A traceback as text; without messages unless ``with_messages`` (DEBUG)."""
    te = traceback.TracebackException(*info, capture_locals=False)
    if not with_messages:
        _withhold(te, info[1], set())
    return "".join(te.format()).rstrip("\n")


class ExceptionRenderer:
    """Processor: turn ``exc_info`` into an ``exception`` string, so redaction sees it.
    Messages are kept on DEBUG lines, or on every line when ``messages`` (``log.level: debug``)."""

    def __init__(self, messages: bool = False) -> None:
        self.messages = messages

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        info = _exc_info(event_dict.pop("exc_info", None))
        if info is not None:
            shown = self.messages or _is_debug(method_name, event_dict)
            event_dict["exception"] = format_exception(info, with_messages=shown)
        return event_dict


render_exceptions = ExceptionRenderer()


# --- redaction -----------------------------------------------------------------------------------


def _collect(value: Any, sensitive: bool, out: set[str]) -> None:
    """Gather the strings logged under sensitive keys (at any depth)."""
    if isinstance(value, str):
        if sensitive and len(value) >= _SCRUB_MIN_LEN:
            out.add(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect(item, sensitive or (isinstance(key, str) and key.lower() in SENSITIVE_KEYS), out)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, sensitive, out)


def _scrub(text: str, values: Iterable[str]) -> str:
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return _mask(text)


def _redact_value(key: str | None, value: Any, values: list[str]) -> Any:
    if key is not None and key.lower() in SENSITIVE_KEYS:
        return REDACTED
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        if key is not None and (key in _NOT_PHI or key.endswith("_id")):
            return value
        return _scrub(value, values)
    if isinstance(value, dict):
        return {k: _redact_value(k if isinstance(k, str) else None, v, values) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_redact_value(None, v, values) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, (set, frozenset)):
        return sorted((_redact_value(None, v, values) for v in value), key=repr)
    if isinstance(value, BaseException):
        shown = str(value) if isinstance(value, _SAFE_MESSAGE) else WITHHELD
        return _scrub(f"{type(value).__name__}: {shown}", values)
    # Anything else would be rendered with repr() by the renderer: mask that text now.
    return _scrub(repr(value), values)


def redact_phi(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Processor: keep PHI out of every line logged above DEBUG (runs after rendering
    exceptions, so their text is covered too)."""
    if _is_debug(method_name, event_dict):
        return event_dict
    found: set[str] = set()
    for key, value in event_dict.items():
        if key not in _META:
            _collect(value, key.lower() in SENSITIVE_KEYS, found)
    values = sorted(found, key=len, reverse=True)  # longest first: a value inside another
    for key in list(event_dict):
        if key not in _META:
            event_dict[key] = _redact_value(key, event_dict[key], values)
    return event_dict


def _stdlib_logger_name(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    record = event_dict.get("_record")
    if isinstance(record, logging.LogRecord) and not event_dict.get("_from_structlog"):
        event_dict.setdefault("logger", record.name)
    return event_dict


def processors(exception_messages: bool = False) -> list[Callable[..., Any]]:
    """The chain every line goes through before rendering, structlog's and the stdlib's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _stdlib_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        ExceptionRenderer(exception_messages),  # before redaction: a traceback's text is redacted too
        redact_phi,
    ]


# --- setup ---------------------------------------------------------------------------------------


class _Handler(logging.StreamHandler[TextIO]):
    """Our root handler (marked so a second ``configure`` replaces it)."""


def _is_replaceable(handler: logging.Handler) -> bool:
    # Ours from an earlier configure(), or a plain stream handler such as basicConfig's, which
    # would print third-party lines unredacted. Test harness handlers (pytest's) are kept.
    return isinstance(handler, _Handler) or type(handler) is logging.StreamHandler


def configure(level: str = "info", json: bool | None = None, stream: TextIO | None = None) -> None:
    """Configure structlog, the stdlib root logger and the uncaught-exception hooks once, at
    process start. Every line goes to ``stream`` (stderr) through the same redacting chain."""
    out = sys.stderr if stream is None else stream
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    if json is None:
        json = not out.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    chain = processors(exception_messages=numeric <= logging.DEBUG)
    structlog.configure(
        processors=[*chain, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=chain,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if _is_replaceable(h)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Third-party chatter starts at WARNING, or at our level when that is higher.
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
    _install_hooks()


def _install_hooks() -> None:
    """Uncaught exceptions would be printed raw by Python: log them through the chain."""
    crash = structlog.get_logger("pbx_router.crash")

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        crash.critical("uncaught_exception", exc_info=(exc_type, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        crash.error("thread_uncaught_exception", thread=args.thread.name if args.thread else None,
                    exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def get_logger(name: str | None = None, **initial: Any) -> Any:
    return structlog.get_logger(name, **initial) if name else structlog.get_logger(**initial)
