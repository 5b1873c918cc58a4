"""Worker process main: ``python -m pbx_router.speech.worker``. Speaks ``protocol`` on stdin/stdout.

One process, many sessions: each open session borrows a recogniser (decoder) from this process's
free list, so a worker serves many concurrent calls while only voiced audio costs CPU. Blocking
by design; the daemon's event loop never runs this code.
"""

from __future__ import annotations

import json
import os
import sys
from typing import BinaryIO

from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.protocol import HEADER, Op, decode_header, encode
from pbx_router.speech.types import Recognizer


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    def send(op: Op, session: int, payload: bytes = b"") -> None:
        out.write(encode(op, session, payload))
        out.flush()

    header = _read_exact(inp, HEADER.size)
    if header is None:
        return
    length, op, _ = decode_header(header)
    if op is not Op.CONFIG:
        raise SystemExit("first frame must be CONFIG")
    factory = RecognizerFactory.from_json((_read_exact(inp, length) or b"").decode())
    # Load the model before saying READY, and build the decoders expected to be needed at once
    # now: building one costs ~100 ms, which would stall every call on this worker mid-stream.
    prewarm = max(1, int(os.environ.get("PBX_ROUTER_SPEECH_PREWARM", "1")))
    free: list[Recognizer] = [factory.create() for _ in range(prewarm)]
    sessions: dict[int, Recognizer] = {}
    send(Op.READY, 0, json.dumps({"pid": os.getpid()}).encode())

    while True:
        header = _read_exact(inp, HEADER.size)
        if header is None:
            return  # parent closed the pipe: shut down
        length, op, session = decode_header(header)
        payload = _read_exact(inp, length) if length else b""
        if payload is None:
            return
        try:
            if op is Op.OPEN:
                sessions[session] = free.pop() if free else factory.create()
            elif op is Op.FEED:
                rec = sessions.get(session)
                if rec is not None:
                    partial = rec.accept(payload)
                    if partial is not None:
                        send(Op.PARTIAL, session, json.dumps(partial.to_json()).encode())
            elif op is Op.FINISH:
                rec = sessions.get(session)
                if rec is None:
                    send(Op.ERROR, session, b"unknown session")
                else:
                    send(Op.FINAL, session, json.dumps(rec.final().to_json()).encode())
            elif op is Op.CLOSE:
                rec = sessions.pop(session, None)
                if rec is not None:
                    rec.reset()
                    free.append(rec)
        except Exception as exc:  # one bad utterance must not take the other calls down
            sessions.pop(session, None)
            send(Op.ERROR, session, f"{type(exc).__name__}: {exc}".encode())


def main() -> None:
    # The protocol owns the real stdout; anything a C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
