"""Worker process main: ``python -m pbx_router.speech.worker``. Speaks ``protocol`` on stdin/stdout.

One process, many sessions: each open session borrows a recogniser (decoder) from this process's
free list, so a worker serves many concurrent calls while only voiced audio costs CPU. Blocking
by design; the daemon's event loop never runs this code.

Each session decodes on a thread of its own, fed in order through its inbox; the main thread only
reads frames and hands them out. So one utterance whose decode hangs holds up that session alone:
the parent aborts it when its deadline passes (``ABORT``: the session and its recogniser are
dropped, the thread is left to return or not) and every other session on this worker carries on.
``PING`` is answered by the main thread with the number of aborted decodes still stuck, which is
what the parent's replacement policy looks at (``process_backend``). PocketSphinx holds the GIL
while it decodes, so these threads do not decode in parallel: throughput is what one thread
had; what they buy is isolation. A decode stuck inside C with the GIL held freezes the whole
process; the parent sees no PONG and replaces the worker (a global stall).

Final decodes take turns (:class:`DecodeGate`): one at a time per process, in the order the
utterances ended. Moonshine does all its work in ``final()`` and releases the GIL, so without the
gate a burst of callers who stop speaking together (twenty, say) all share the core and all get
their transcripts late, at the end of the burst; taking turns, each one's comes as soon as its own
decode is done, and half of them long before the last. A decode that runs past ``patience_s`` no
longer holds the next one up: it may be stuck, and isolation comes first.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections import deque
from typing import BinaryIO

from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.faults import with_faults
from pbx_router.speech.protocol import HEADER, Op, decode_header, encode
from pbx_router.speech.types import Recognizer, Transcript


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = stream.read(size - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)


class _Decoders:
    """This process's idle recognisers, shared by the session threads."""

    def __init__(self, factory: RecognizerFactory, prewarm: int) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._free: list[Recognizer] = [self._build() for _ in range(prewarm)]

    def _build(self) -> Recognizer:
        return with_faults(self._factory.create())

    def take(self) -> Recognizer:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._build()  # outside the lock: building takes ~100 ms

    def give(self, rec: Recognizer) -> None:
        with self._lock:
            self._free.append(rec)


class DecodeGate:
    """Final decodes of one process, ``width`` at a time in arrival order (module doc). A decode
    older than ``patience_s`` stops counting against ``width``."""

    def __init__(self, width: int = 1, patience_s: float = 1.5) -> None:
        self.width = width
        self.patience_s = patience_s
        self._cond = threading.Condition()
        self._running: dict[object, float] = {}  # ticket -> when its decode started
        self._waiting: deque[object] = deque()

    def enter(self, ticket: object) -> None:
        with self._cond:
            self._waiting.append(ticket)
            while True:
                now = time.monotonic()
                young = [t0 for t0 in self._running.values() if now - t0 < self.patience_s]
                if len(young) < self.width and self._waiting[0] is ticket:
                    self._waiting.popleft()
                    self._running[ticket] = now
                    self._cond.notify_all()  # the next in line may fit too (width > 1)
                    return
                # Woken by a leave, or when the oldest decode in the way runs out of patience.
                self._cond.wait(min(young) + self.patience_s - now if young else None)

    def leave(self, ticket: object) -> None:
        with self._cond:
            self._running.pop(ticket, None)
            self._cond.notify_all()


class _Session:
    """One session's thread: its frames in order, one at a time, on one recogniser."""

    def __init__(self, session: int, decoders: _Decoders, send: _Send, gate: DecodeGate | None = None) -> None:
        self.id = session
        self._gate = gate
        self.inbox: queue.SimpleQueue[tuple[Op, bytes] | None] = queue.SimpleQueue()
        self.aborted = False  # set by the main thread; read here between frames
        # Closed by the parent: frames still queued are not decoded (a recognition started at a
        # pause and withdrawn when the caller went on costs nothing unless it had begun).
        self.closed = False
        self._decoders = decoders
        self._send = send
        # A daemon thread: a decode that never returns must not keep the process from exiting.
        self.thread = threading.Thread(target=self._run, name=f"session-{session}", daemon=True)

    def _run(self) -> None:
        rec: Recognizer | None = None
        failed = False
        try:
            while True:
                item = self.inbox.get()
                if item is None:
                    return
                if failed or self.aborted or self.closed:
                    continue
                op, payload = item
                try:
                    if rec is None:
                        rec = self._decoders.take()
                    if op is Op.FEED:
                        partial = rec.accept(payload)
                        if partial is not None and not self.aborted:
                            self._send(Op.PARTIAL, self.id, json.dumps(partial.to_json()).encode())
                    elif op is Op.FINISH:
                        final = self._final(rec)
                        if final is not None and not self.aborted:
                            self._send(Op.FINAL, self.id, json.dumps(final.to_json()).encode())
                except Exception as exc:  # one bad utterance must not take the other calls down
                    failed = True
                    rec = None  # a recogniser that raised is not handed to another call
                    self._send(Op.ERROR, self.id, f"{type(exc).__name__}: {exc}".encode())
        finally:
            # An aborted session's recogniser may be the one that hung: it is never reused.
            if rec is not None and not self.aborted:
                try:
                    rec.reset()
                except Exception:  # noqa: BLE001 - a recogniser that cannot reset is dropped
                    return
                self._decoders.give(rec)


    def _final(self, rec: Recognizer) -> Transcript | None:
        """The decode, in its turn; None when the session was given up while it waited."""
        gate = self._gate
        if gate is None:
            return rec.final()
        gate.enter(self)
        try:
            if self.aborted or self.closed:
                return None
            return rec.final()
        finally:
            gate.leave(self)


class _Send:
    """Frames to the parent; the session threads and the main thread share one pipe."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, op: Op, session: int, payload: bytes = b"") -> None:
        frame = encode(op, session, payload)
        with self._lock:
            self._out.write(frame)
            self._out.flush()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    send = _Send(out)
    header = _read_exact(inp, HEADER.size)
    if header is None:
        return
    length, op, _ = decode_header(header)
    if op is not Op.CONFIG:
        raise SystemExit("first frame must be CONFIG")
    factory = RecognizerFactory.from_json((_read_exact(inp, length) or b"").decode())
    # Load the model before saying READY, and build the decoders expected to be needed at once
    # now: building one costs ~100 ms, which would stall a call mid-stream.
    prewarm = max(1, int(os.environ.get("PBX_ROUTER_SPEECH_PREWARM", "1")))
    decoders = _Decoders(factory, prewarm)
    sessions: dict[int, _Session] = {}
    gate = DecodeGate()
    aborted: list[_Session] = []  # aborted sessions whose thread may still be stuck
    send(Op.READY, 0, json.dumps({"pid": os.getpid()}).encode())

    while True:
        header = _read_exact(inp, HEADER.size)
        if header is None:
            return  # parent closed the pipe: shut down
        length, op, session = decode_header(header)
        payload = _read_exact(inp, length) if length else b""
        if payload is None:
            return
        if op is Op.OPEN:
            state = sessions[session] = _Session(session, decoders, send, gate)
            state.thread.start()
        elif op is Op.FEED or op is Op.FINISH:
            state_or_none = sessions.get(session)
            if state_or_none is not None:
                state_or_none.inbox.put((op, payload))
            elif op is Op.FINISH:
                send(Op.ERROR, session, b"unknown session")
        elif op is Op.CLOSE or op is Op.ABORT:
            state_or_none = sessions.pop(session, None)
            if state_or_none is not None:
                state_or_none.closed = True
                if op is Op.ABORT:
                    state_or_none.aborted = True
                    aborted.append(state_or_none)
                state_or_none.inbox.put(None)
        elif op is Op.PING:
            aborted[:] = [s for s in aborted if s.thread.is_alive()]
            send(Op.PONG, session, json.dumps({"stuck": len(aborted), "sessions": len(sessions)}).encode())


def main() -> None:
    # The protocol owns the real stdout; anything a C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
