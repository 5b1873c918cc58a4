"""The worker's session threads, in process: what a closed session still decodes."""

from __future__ import annotations

import threading
import time
from typing import Any

from pbx_router.speech.protocol import Op
from pbx_router.speech.types import Transcript
from pbx_router.speech.worker import DecodeGate, _Session


class CountingRecogniser:
    sample_rate = 16000

    def __init__(self) -> None:
        self.fed = 0
        self.finals = 0

    def accept(self, pcm: bytes) -> Transcript | None:
        self.fed += len(pcm)
        return None

    def final(self) -> Transcript:
        self.finals += 1
        return Transcript(text="hello", confidence=1.0, is_final=True)

    def reset(self) -> None:
        pass


class Decoders:
    def __init__(self) -> None:
        self.rec = CountingRecogniser()
        self.given: list[Any] = []

    def take(self) -> CountingRecogniser:
        return self.rec

    def give(self, rec: Any) -> None:
        self.given.append(rec)


def run(closed_before_start: bool) -> tuple[Decoders, list[Op]]:
    decoders = Decoders()
    sent: list[Op] = []
    session = _Session(1, decoders, lambda op, sid, payload=b"": sent.append(op))  # type: ignore[arg-type]
    session.inbox.put((Op.FEED, bytes(3200)))
    session.inbox.put((Op.FINISH, b""))
    if closed_before_start:
        session.closed = True  # what the main thread does on CLOSE
    session.inbox.put(None)
    session.thread.start()
    session.thread.join(timeout=10)
    assert not session.thread.is_alive()
    return decoders, sent


def test_a_finished_session_decodes_and_gives_its_recogniser_back() -> None:
    decoders, sent = run(closed_before_start=False)
    assert sent == [Op.FINAL] and decoders.rec.finals == 1
    assert decoders.given == [decoders.rec]


def test_frames_queued_behind_a_close_are_not_decoded() -> None:
    """An early recognition withdrawn because the caller went on (calls/listen.py) is closed
    while its FINISH may still be queued: that decode is skipped, not paid for."""
    decoders, sent = run(closed_before_start=True)
    assert sent == [] and decoders.rec.finals == 0 and decoders.rec.fed == 0
    assert decoders.given == []  # never taken, so nothing to give back


def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def _queue_up(gate: DecodeGate, names: list[str], done: list[str]) -> list[threading.Thread]:
    """Threads that each decode in their turn, started so that they line up in ``names`` order."""
    threads = []
    for i, name in enumerate(names):
        def decode(name: str = name) -> None:
            gate.enter(name)
            done.append(name)
            gate.leave(name)
        t = threading.Thread(target=decode)
        t.start()
        _until(lambda n=i + 1: len(gate._waiting) == n)  # in line before the next one comes
        threads.append(t)
    return threads


def test_utterances_that_end_together_are_decoded_in_turn_in_the_order_they_ended() -> None:
    gate = DecodeGate(width=1, patience_s=30)
    gate.enter("first")  # a decode under way
    done: list[str] = []
    threads = _queue_up(gate, ["b", "c", "d"], done)
    assert done == []  # nobody overtakes the decode under way
    gate.leave("first")
    for t in threads:
        t.join(5)
    assert done == ["b", "c", "d"]


def test_a_decode_that_runs_too_long_stops_holding_the_others_up() -> None:
    """Isolation before order: a decode stuck for good must not stall every call on the worker."""
    gate = DecodeGate(width=1, patience_s=0.2)
    gate.enter("stuck")  # never leaves
    done: list[str] = []
    started = time.monotonic()
    for t in _queue_up(gate, ["b", "c"], done):
        t.join(5)
    assert done == ["b", "c"]
    assert time.monotonic() - started < 3
