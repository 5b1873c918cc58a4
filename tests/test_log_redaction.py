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
