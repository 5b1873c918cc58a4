"""Framing between the pool and its worker processes (stdin/stdout pipes).

Frame: ``>IBI`` header (payload length, opcode, session id) then the payload. Pure functions so
both sides (async parent, blocking child) share one definition.
"""

from __future__ import annotations

import enum
import struct

HEADER = struct.Struct(">IBI")
MAX_PAYLOAD = 4 * 1024 * 1024  # 2 minutes of 16 kHz audio; anything bigger is a protocol error


class Op(enum.IntEnum):
    # parent -> worker
    CONFIG = 1  # payload: RecognizerFactory JSON (first frame)
    OPEN = 2
    FEED = 3  # payload: PCM16
    FINISH = 4
    CLOSE = 5
    ABORT = 6  # the parent gave up on the session (deadline missed): drop it and its recogniser
    PING = 7  # liveness: answered by the worker's reader thread, whatever its decoders are doing
    # worker -> parent
    READY = 20  # payload: JSON {"pid": ...}
    PARTIAL = 21  # payload: Transcript JSON
    FINAL = 22  # payload: Transcript JSON
    ERROR = 23  # payload: utf-8 message (the session's utterance is lost, the worker lives on)
    PONG = 24  # payload: JSON {"stuck": aborted sessions whose decode has still not returned}


def encode(op: Op, session: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload too large: {len(payload)} bytes")
    return HEADER.pack(len(payload), op, session) + payload


def decode_header(header: bytes) -> tuple[int, Op, int]:
    """-> (payload length, opcode, session). ValueError on an unknown opcode or oversized frame."""
    length, op, session = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        raise ValueError(f"frame payload too large: {length} bytes")
    try:
        return length, Op(op), session
    except ValueError:
        raise ValueError(f"unknown opcode {op}") from None
