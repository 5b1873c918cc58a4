"""RTP parse/serialize against packets recorded from a real Asterisk 22.10.1."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx_router.media.rtp import RtpPacket, parse_rtp, seq_newer, serialize_rtp

from media_captures import path, summary

# Headers quoted in FINDINGS.md §1 (slin16): the first packet and the first one with speech.
FINDINGS_FIRST = bytes.fromhex("80762ad80000014053afe873")
FINDINGS_SPEECH = bytes.fromhex("80762ae200000dc053afe873")
FINDINGS_SPEECH_PAYLOAD_START = bytes.fromhex("009800540007ffd6ffcaffd4ffd3ffb9")

# (summary file, key inside it or None, payload file, payload bytes per packet)
CAPTURES = [
    ("slin16/externalmedia_rtp_summary.json", None, "slin16/externalmedia_slin16_payload.raw", 640),
    ("slin16_sipp/externalmedia_rtp_summary.json", None, "slin16_sipp/externalmedia_slin16_payload.raw", 640),
    ("slin8/externalmedia_rtp_summary.json", None, "slin8/externalmedia_slin_payload.raw", 320),
    ("snoop/snoop_rtp_summary.json", "spy_in", "snoop/snoop_in_slin16_payload.raw", 640),
    ("holding/listener_rtp_summary.json", None, "holding/listener_payload.ulaw", 160),
]


def _recorded_packets(summary_name: str, key: str | None, payload_name: str, size: int):
    """Every packet of a capture: the recorded first header, advanced as the summary proves the
    stream advanced (seq +1, ts +size-in-samples, one SSRC, no gaps), with its recorded payload."""
    info = summary(summary_name)
    if key:
        info = info[key]
    assert info["seq_gaps"] == 0 and len(info["ssrcs"]) == 1 and not info["markers_at_index"]
    payloads = path(payload_name).read_bytes()
    first = info["first_packets"][0]
    header = bytes.fromhex(first["header_hex"])
    b0, b1, seq, ts, ssrc = struct.unpack("!BBHII", header)
    (ts_step,) = (int(k) for k in info["ts_increment_counts"])
    packets = []
    for i in range(info["packets"]):
        hdr = struct.pack("!BBHII", b0, b1, (seq + i) & 0xFFFF, (ts + ts_step * i) & 0xFFFFFFFF, ssrc)
        packets.append(hdr + payloads[i * size : (i + 1) * size])
    return info, packets


def test_findings_headers_parse_to_the_documented_fields() -> None:
    first = parse_rtp(FINDINGS_FIRST + bytes(640))
    assert (first.version, first.payload_type, first.sequence_number, first.timestamp) == (2, 118, 0x2AD8, 320)
    assert first.ssrc == 0x53AFE873
    assert not (first.marker or first.padding or first.extension) and first.csrc == ()
    assert first.payload == bytes(640)

    payload = path("slin16/externalmedia_slin16_payload.raw").read_bytes()[10 * 640 : 11 * 640]
    assert payload.startswith(FINDINGS_SPEECH_PAYLOAD_START)  # packet #10 (0-based) as FINDINGS quotes it
    speech = parse_rtp(FINDINGS_SPEECH + payload)
    assert speech.sequence_number - first.sequence_number == 10
    assert speech.timestamp == 0xDC0
    assert serialize_rtp(speech) == FINDINGS_SPEECH + payload


@pytest.mark.parametrize(("summary_name", "key", "payload_name", "size"), CAPTURES)
def test_summary_first_packets_round_trip_byte_for_byte(
    summary_name: str, key: str | None, payload_name: str, size: int
) -> None:
    info = summary(summary_name)
    if key:
        info = info[key]
    payloads = path(payload_name).read_bytes()
    for i, rec in enumerate(info["first_packets"]):
        # The payload file is the packets' payloads in order: its slice starts as recorded.
        payload = payloads[i * size : (i + 1) * size]
        assert payload[:32].hex() == rec["payload_first32_hex"]
        wire = bytes.fromhex(rec["header_hex"]) + payload
        pkt = parse_rtp(wire)
        assert pkt.version == rec["version"]
        assert pkt.padding == bool(rec["padding"]) and pkt.extension == bool(rec["extension"])
        assert len(pkt.csrc) == rec["csrc_count"] and pkt.marker == bool(rec["marker"])
        assert (pkt.payload_type, pkt.sequence_number, pkt.timestamp) == (rec["pt"], rec["seq"], rec["ts"])
        assert f"{pkt.ssrc:#x}" == rec["ssrc"]
        assert len(pkt.payload) == rec["payload_len"]
        assert serialize_rtp(pkt) == wire


@pytest.mark.parametrize(("summary_name", "key", "payload_name", "size"), CAPTURES)
def test_whole_captures_round_trip_and_reassemble_the_payload_file(
    summary_name: str, key: str | None, payload_name: str, size: int
) -> None:
    info, packets = _recorded_packets(summary_name, key, payload_name, size)
    parsed = [parse_rtp(p) for p in packets]
    assert [serialize_rtp(p) for p in parsed] == packets
    assert {p.payload_type for p in parsed} == set(info["payload_types"])
    assert b"".join(p.payload for p in parsed) == path(payload_name).read_bytes()


@pytest.mark.parametrize("capture", ["sipp", "local"])
def test_ulaw_first_packet_hex_round_trips(capture: str) -> None:
    info = summary(f"{capture}/externalmedia_rtp_summary.json")
    wire = bytes.fromhex(info["first_packet_hex"])  # header + the first 4 payload bytes
    pkt = parse_rtp(wire)
    assert pkt.payload_type == 0 and pkt.sequence_number == info["first_seq"]
    assert f"{pkt.ssrc:#x}" == info["ssrcs"][0]
    assert pkt.payload == b"\xff\xff\xff\xff"
    assert serialize_rtp(pkt) == wire


def test_csrc_extension_and_padding_round_trip() -> None:
    pkt = RtpPacket(
        version=2, padding=True, extension=True, marker=True, payload_type=96,
        sequence_number=65535, timestamp=0xFFFFFFFF, ssrc=1, csrc=(1, 2, 0xFFFFFFFF),
        extension_profile=0xBEDE, extension_data=b"\x10\xab\x00\x00", payload=b"abc", padding_size=5,
    )
    wire = serialize_rtp(pkt)
    assert len(wire) == 12 + 12 + 4 + 4 + 3 + 5
    assert wire[0] == 0x80 | 0x20 | 0x10 | 3 and wire[1] == 0x80 | 96
    assert wire[-5:] == b"\x00\x00\x00\x00\x05"
    assert parse_rtp(wire) == pkt


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (b"", "empty"),
        (FINDINGS_FIRST[:11], "one byte short of a header"),
        (bytes([0x40]) + FINDINGS_FIRST[1:], "version 1"),
        (bytes([0x00]) + FINDINGS_FIRST[1:], "version 0"),
        (bytes([0xC0]) + FINDINGS_FIRST[1:], "version 3"),
        (bytes([0x82]) + FINDINGS_FIRST[1:] + bytes(4), "2 CSRCs declared, 1 present"),
        (bytes([0x90]) + FINDINGS_FIRST[1:] + b"\xbe\xde", "extension header truncated"),
        (bytes([0x90]) + FINDINGS_FIRST[1:] + b"\xbe\xde\x00\x02" + bytes(4), "extension body truncated"),
        (bytes([0xA0]) + FINDINGS_FIRST[1:] + b"abc\x00", "padding count 0"),
        (bytes([0xA0]) + FINDINGS_FIRST[1:] + b"ab\x09", "padding longer than the payload"),
        (bytes([0xA0]) + FINDINGS_FIRST[1:], "padding bit with no byte to hold the count"),
    ],
)
def test_malformed_packets_raise_value_error(wire: bytes, why: str) -> None:
    with pytest.raises(ValueError):
        parse_rtp(wire)


def test_serialize_rejects_unrepresentable_fields() -> None:
    ok = parse_rtp(FINDINGS_FIRST)
    from dataclasses import replace

    for bad in (
        replace(ok, payload_type=128),
        replace(ok, sequence_number=70000),
        replace(ok, ssrc=-1),
        replace(ok, csrc=tuple(range(16))),
        replace(ok, extension=True),  # no profile
        replace(ok, extension=True, extension_profile=1, extension_data=b"abc"),
        replace(ok, padding=True),  # no size
        replace(ok, version=1),
    ):
        with pytest.raises(ValueError):
            serialize_rtp(bad)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_parse_or_raise_value_error_only(data: bytes) -> None:
    try:
        pkt = parse_rtp(data)
    except ValueError:
        return
    if not pkt.padding:
        assert serialize_rtp(pkt) == data


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=12, max_size=80).map(lambda b: bytes([0x80 | (b[0] & 0x3F)]) + b[1:]),
)
def test_random_v2_headers_parse_or_raise_value_error_only(data: bytes) -> None:
    # Version forced to 2 so the CSRC/extension/padding checks are what gets exercised.
    try:
        pkt = parse_rtp(data)
    except ValueError:
        return
    assert len(pkt.csrc) == data[0] & 0x0F


def test_sequence_comparison_wraps() -> None:
    assert seq_newer(1, 0) and seq_newer(0, 65535) and not seq_newer(65535, 0)
    assert not seq_newer(5, 5)
