"""Phone numbers, dates of birth and transcripts never appear in logs above DEBUG."""

from __future__ import annotations

from pbx_router.log import REDACTED, redact_phi


def redact(level: str, **kw: object) -> dict[str, object]:
    return dict(redact_phi(None, level, {"level": level, **kw}))


def test_sensitive_keys_are_redacted_above_debug() -> None:
    out = redact("info", caller_number="+15551234567", transcript="I need my refill", dob="03141980")
    assert out["caller_number"] == out["transcript"] == out["dob"] == REDACTED


def test_debug_keeps_everything() -> None:
    out = redact("debug", caller_number="+15551234567", transcript="I need my refill")
    assert out["caller_number"] == "+15551234567" and out["transcript"] == "I need my refill"


def test_numbers_and_dates_inside_free_text_are_masked() -> None:
    for text in ["call back +1 555 123 4567", "(555) 123-4567", "555-123-4567", "dob 03/14/1980",
                 "born 1980-03-14", "keyed 03141980", "+15551234567"]:
        out = redact("warning", note=text)
        assert "555" not in str(out["note"]).replace(REDACTED, "") or REDACTED in str(out["note"])
        assert REDACTED in str(out["note"]), text


def test_ids_addresses_and_times_stay_readable() -> None:
    out = redact("info", channel_id="1795767140.22", call_id="9bc1db54-e14b", ari="http://127.0.0.1:8088",
                 timestamp="2026-11-27T09:29:33Z", port="40000", route="dialplan clinic,s,1")
    assert out["channel_id"] == "1795767140.22" and out["ari"] == "http://127.0.0.1:8088"
    assert out["timestamp"] == "2026-11-27T09:29:33Z" and out["port"] == "40000"


# --- containers, tracebacks, the standard library: through the real configure() ---------------

import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

import pytest  # noqa: E402
import structlog  # noqa: E402

from pbx_router import log  # noqa: E402

NUMBER, DOB, SAID = "+16175550143", "07/19/1958", "my husband collapsed on the floor"


@pytest.fixture
def configured() -> Iterator[Callable[[str], io.StringIO]]:
    """``log.configure`` as the daemon calls it, writing to a buffer; undone afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = (sys.excepthook, threading.excepthook)

    def configure(level: str) -> io.StringIO:
        out = io.StringIO()
        log.configure(level, json=True, stream=out)
        return out

    yield configure
    structlog.configure(**saved)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)
    sys.excepthook, threading.excepthook = hooks


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_redaction_looks_inside_dicts_lists_tuples_and_sets() -> None:
    out = redact("info", route={"trace": [{"transcript": SAID}, ("call back", NUMBER)], "tags": {DOB}},
                 facts=[{"caller_number": NUMBER, "intent": "emergency"}])
    text = json.dumps(out)
    assert NUMBER not in text and DOB not in text and SAID not in text
    assert out["facts"] == [{"caller_number": REDACTED, "intent": "emergency"}]


def test_a_value_logged_under_a_sensitive_key_is_scrubbed_from_the_rest_of_the_line() -> None:
    out = redact("error", transcript=SAID, error=f"no intent in {SAID!r}")
    assert SAID not in str(out["error"]) and REDACTED in str(out["error"])


def test_more_phone_and_date_shapes_are_masked() -> None:
    for text in ["617.555.0143", "call 555-0143", "born March 14, 1980", "dob 14 Mar 1980", "14.03.1980",
                 "+1 (617) 555-0143"]:
        assert REDACTED in str(redact("info", note=text)["note"]), text
    assert redact("info", note="10.0.0.1:5060 at 09:29")["note"] == "10.0.0.1:5060 at 09:29"


def test_a_traceback_at_error_shows_frames_but_no_message(configured: Callable[[str], io.StringIO]) -> None:
    out = configured("info")
    message = f"caller {NUMBER} (dob {DOB}) said {SAID}"
    try:
        try:
            raise KeyError(message)
        except KeyError as exc:
            raise RuntimeError(message) from exc
    except RuntimeError:
        log.get_logger("t").exception("call_flow_failed")
    (line,) = lines(out)
    text = json.dumps(line)
    assert "RuntimeError" in text and "KeyError" in text and "test_log_redaction.py" in text
    assert NUMBER not in text and DOB not in text and SAID not in text


def test_os_errors_keep_their_message_masked(configured: Callable[[str], io.StringIO]) -> None:
    out = configured("info")
    try:
        open("/nonexistent/pbx-router-test")  # noqa: SIM115
    except OSError:
        log.get_logger("t").exception("spool_unwritable")
    assert "No such file or directory" in lines(out)[0]["exception"]  # type: ignore[operator]


def test_standard_library_logging_is_redacted_too(configured: Callable[[str], io.StringIO]) -> None:
    out = configured("info")
    logging.getLogger("asyncio").error("Unclosed connection for caller %s", NUMBER)
    try:
        raise ValueError(SAID)
    except ValueError:
        logging.getLogger("asyncpg.pool").exception("connection failed for %s born %s", NUMBER, DOB)
    logging.getLogger("aiohttp.access").info("GET /calls?number=%s", NUMBER)  # below WARNING: dropped
    found = lines(out)
    assert [(x["logger"], x["level"]) for x in found] == [("asyncio", "error"), ("asyncpg.pool", "error")]
    text = json.dumps(found)
    assert NUMBER not in text and DOB not in text and SAID not in text and "ValueError" in text


def test_an_uncaught_thread_exception_goes_through_the_chain(configured: Callable[[str], io.StringIO]) -> None:
    out = configured("info")

    def fail() -> None:
        raise RuntimeError(f"{NUMBER} {SAID}")

    worker = threading.Thread(target=fail, name="worker")
    worker.start()
    worker.join()
    (line,) = lines(out)
    assert line["event"] == "thread_uncaught_exception" and "RuntimeError" in str(line["exception"])
    assert NUMBER not in json.dumps(line) and SAID not in json.dumps(line)


def test_at_debug_everything_is_shown(configured: Callable[[str], io.StringIO]) -> None:
    out = configured("debug")
    try:
        raise RuntimeError(f"caller {NUMBER} said {SAID}")
    except RuntimeError:
        log.get_logger("t").debug("heard", transcript=SAID, exc_info=True)
    text = json.dumps(lines(out))
    assert NUMBER in text and SAID in text


def test_with_log_level_debug_error_lines_show_exception_messages_with_numbers_masked(
    configured: Callable[[str], io.StringIO],
) -> None:
    out = configured("debug")
    try:
        raise RuntimeError(f"no route for {NUMBER}: rules file has no 'default' rule")
    except RuntimeError:
        log.get_logger("t").exception("call_flow_failed")
    exception = str(lines(out)[0]["exception"])
    assert "rules file has no 'default' rule" in exception and NUMBER not in exception
