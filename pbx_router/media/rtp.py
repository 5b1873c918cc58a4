"""RTP (RFC 3550) packets: a pure parser and serializer.

Modelled on aiortc's ``rtp.py``: one frozen value type, a parse function that raises
``ValueError`` (and nothing else) on any malformed input, and a serializer that gives back the
exact bytes for every packet it parsed whose padding octets are zero (RFC 3550 §5.1 leaves their
content unspecified; every sender we know writes zeros).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["RTP_HEADER_SIZE", "RtpPacket", "parse_rtp", "serialize_rtp", "seq_newer"]

RTP_HEADER_SIZE = 12
_FIXED = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class RtpPacket:
    version: int
    padding: bool
    extension: bool
    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension_data: bytes = b""
    payload: bytes = b""
    # Number of padding octets including the final count octet (0 when ``padding`` is False).
    padding_size: int = 0


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP datagram. ValueError on anything that is not a well-formed RTP v2 packet."""
    if len(data) < RTP_HEADER_SIZE:
        raise ValueError(f"RTP packet too short: {len(data)} bytes")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(data)
    version = b0 >> 6
    if version != 2:
        raise ValueError(f"RTP version {version} is not 2")
    padding = bool(b0 & 0x20)
    extension = bool(b0 & 0x10)
    csrc_count = b0 & 0x0F
    pos = RTP_HEADER_SIZE
    end = len(data)
    if pos + 4 * csrc_count > end:
        raise ValueError(f"RTP CSRC list truncated ({csrc_count} declared)")
    csrc = struct.unpack_from(f"!{csrc_count}I", data, pos)
    pos += 4 * csrc_count
    profile: int | None = None
    ext_data = b""
    if extension:
        if pos + 4 > end:
            raise ValueError("RTP extension header truncated")
        profile, words = _EXT_HEADER.unpack_from(data, pos)
        pos += 4
        if pos + 4 * words > end:
            raise ValueError(f"RTP extension truncated ({words} words declared)")
        ext_data = bytes(data[pos : pos + 4 * words])
        pos += 4 * words
    padding_size = 0
    if padding:
        padding_size = data[-1]
        if padding_size == 0 or padding_size > end - pos:
            raise ValueError(f"RTP padding length {padding_size} is invalid")
        end -= padding_size
    return RtpPacket(
        version=version,
        padding=padding,
        extension=extension,
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        csrc=tuple(csrc),
        extension_profile=profile,
        extension_data=ext_data,
        payload=bytes(data[pos:end]),
        padding_size=padding_size,
    )


def serialize_rtp(p: RtpPacket) -> bytes:
    """Bytes for ``p``; ValueError if a field cannot be represented on the wire."""
    if p.version != 2:
        raise ValueError(f"RTP version {p.version} is not 2")
    if not 0 <= p.payload_type <= 0x7F:
        raise ValueError(f"payload type {p.payload_type} out of range")
    if len(p.csrc) > 15:
        raise ValueError(f"{len(p.csrc)} CSRCs, at most 15")
    if p.extension != (p.extension_profile is not None):
        raise ValueError("extension bit and extension_profile disagree")
    if len(p.extension_data) % 4:
        raise ValueError("extension data must be a whole number of 32-bit words")
    if p.padding != (p.padding_size > 0) or p.padding_size > 255:
        raise ValueError(f"padding bit and padding_size {p.padding_size} disagree")
    try:
        b0 = 0x80 | (0x20 if p.padding else 0) | (0x10 if p.extension else 0) | len(p.csrc)
        b1 = (0x80 if p.marker else 0) | p.payload_type
        out = bytearray(_FIXED.pack(b0, b1, p.sequence_number, p.timestamp, p.ssrc))
        out += struct.pack(f"!{len(p.csrc)}I", *p.csrc)
        if p.extension_profile is not None:
            out += _EXT_HEADER.pack(p.extension_profile, len(p.extension_data) // 4)
            out += p.extension_data
    except struct.error as exc:
        raise ValueError(f"RTP field out of range: {exc}") from None
    out += p.payload
    if p.padding_size:
        out += bytes(p.padding_size - 1) + bytes([p.padding_size])
    return bytes(out)


def seq_newer(a: int, b: int) -> bool:
    """True if 16-bit sequence number ``a`` comes after ``b`` (RFC 1982 serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000
