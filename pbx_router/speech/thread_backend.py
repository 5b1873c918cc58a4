"""Recognisers on a thread pool (Vosk: Kaldi releases the GIL, so threads decode in parallel).

``feed`` never waits for decoding: audio goes into the session's buffer and one decode at a time
runs on the pool, taking everything buffered so far (so a slow decode makes the next one bigger
instead of making the caller's audio pump wait). Only a backlog of ``MAX_BACKLOG_S`` makes ``feed``
wait, which bounds memory when the machine is overloaded.

Recognisers are built and warmed ahead (``expected_sessions`` at start, then one spare kept
ready): a fresh Vosk recogniser spends ~0.4 s of CPU in its first decode, which otherwise lands in
the middle of a caller's first utterance.

Threads cannot be killed: a stuck recogniser is abandoned alone (its utterance fails with
RecognitionTimeout; every other session's decodes go on). The thread it holds is lost until the
decode returns, so once ``MAX_STUCK`` abandoned decodes are still running (or none of the pool's
threads is free), later work goes to a fresh executor; the old one is left to finish what was
queued on it, never cancelled under the sessions using it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pbx_router.log import get_logger
from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.faults import with_faults
from pbx_router.speech.types import (
    PoolClosed,
    RecognitionTimeout,
    Recognizer,
    SpeechError,
    Transcript,
    WorkerLost,
)

log = get_logger(__name__)
T = TypeVar("T")

MAX_BACKLOG_S = 5.0  # undecoded audio a session may hold before feed() waits
CLOSE_WAIT_S = 2.0  # how long close() waits for an in-flight decode before abandoning the recogniser
MAX_STUCK = 2  # abandoned decodes still running before later work moves to a fresh executor


class ThreadStream:
    def __init__(self, backend: ThreadBackend, recognizer: Recognizer) -> None:
        self.sample_rate = recognizer.sample_rate
        self.partial: Transcript | None = None
        self._backend = backend
        self._rec: Recognizer | None = recognizer
        self._buf = bytearray()
        self._inflight: asyncio.Future[Transcript | None] | None = None
        self._error: SpeechError | None = None
        self._max_backlog = int(MAX_BACKLOG_S * recognizer.sample_rate * 2)
        self._done = False

    async def feed(self, pcm: bytes) -> None:
        if self._error is not None:
            raise self._error
        if self._done or self._rec is None or not pcm:
            return
        self._buf += pcm
        if self._inflight is None:
            self._submit()
        elif len(self._buf) > self._max_backlog:
            await asyncio.wait({self._inflight})  # overloaded: let decoding catch up

    async def finish(self, timeout: float = 5.0) -> Transcript:
        if self._rec is None:
            raise PoolClosed("session closed")
        rec = self._rec
        try:
            async with asyncio.timeout(timeout):
                while self._inflight is not None or self._buf:
                    if self._inflight is None:
                        self._submit()
                    assert self._inflight is not None
                    # wait(), not await: a timeout must not cancel a decode a thread is running.
                    await asyncio.wait({self._inflight})
                    if self._error is not None:
                        raise self._error
                result = await self._backend.run(rec.final)
        except TimeoutError:
            self._rec = None  # never hand a possibly-stuck recogniser to another call
            self._backend.stalls += 1
            self._backend.abandon(self._inflight)
            raise RecognitionTimeout(f"no final transcript within {timeout:.1f}s") from None
        except SpeechError:
            raise
        except Exception as exc:  # noqa: BLE001 - a recogniser error loses this utterance, not the pool
            raise WorkerLost(f"recogniser error: {exc!r}") from None
        self._done = True
        return result

    async def close(self) -> None:
        rec, self._rec = self._rec, None
        if rec is None:
            return
        self._buf.clear()
        if self._inflight is not None:
            # A recogniser is single-threaded: never reset it while a thread is still decoding.
            await asyncio.wait({self._inflight}, timeout=CLOSE_WAIT_S)
            if self._inflight is not None:
                self._backend.abandon(self._inflight)
                return
        if not self._done or self._error is not None:
            try:
                await self._backend.run(rec.reset)
            except (SpeechError, RuntimeError):
                self._backend.abandon()  # pool closing or broken recogniser: do not reuse it
                return
        self._backend.release(rec)

    def _submit(self) -> None:
        assert self._rec is not None
        chunk = bytes(self._buf)
        self._buf.clear()
        fut = self._backend.submit(self._rec.accept, chunk)
        self._inflight = fut
        fut.add_done_callback(self._decoded)

    def _decoded(self, fut: asyncio.Future[Transcript | None]) -> None:
        self._inflight = None
        if fut.cancelled():
            self._error = WorkerLost("speech thread pool was replaced")
            return
        exc = fut.exception()
        if exc is not None:
            self._error = WorkerLost(f"recogniser error: {exc!r}")
            return
        partial = fut.result()
        if partial is not None:
            self.partial = partial
        # Whatever arrived while decoding goes next, in one piece.
        if self._buf and self._rec is not None and not self._done:
            self._submit()


class ThreadBackend:
    def __init__(self, factory: RecognizerFactory, workers: int, expected_sessions: int = 0) -> None:
        self.sample_rate = factory.sample_rate
        self.restarts = 0
        self.stalls = 0
        self.busy = 0
        self._stuck: set[asyncio.Future[Any]] = set()  # decodes of abandoned recognisers still running
        self._factory = factory
        self._size = workers
        self._prebuild = max(1, expected_sessions)
        self._executor: ThreadPoolExecutor | None = None
        self._free: list[Recognizer] = []
        self._spare: asyncio.Task[None] | None = None

    @property
    def worker_pids(self) -> list[int]:
        return []

    def _create(self) -> Recognizer:
        return with_faults(self._factory.create())

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._executor is None:
            raise PoolClosed("speech pool is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.submit(fn, *args)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="speech")
        # Load the model and warm the recognisers now (seconds) so early callers do not pay.
        first = await self.run(self._create)
        rest = await asyncio.gather(*(self.run(self._create) for _ in range(self._prebuild - 1)))
        self._free = [first, *rest]

    async def open(self) -> ThreadStream:
        if self._executor is None:
            raise PoolClosed("speech pool is closed")
        rec = self._free.pop() if self._free else await self.run(self._create)
        self.busy += 1
        if not self._free and (self._spare is None or self._spare.done()):
            self._spare = asyncio.create_task(self._build_spare(), name="speech-spare")
        return ThreadStream(self, rec)

    def release(self, rec: Recognizer) -> None:
        self.busy -= 1
        self._free.append(rec)

    def abandon(self, decoding: asyncio.Future[Any] | None = None) -> None:
        """A session gave up its recogniser (stuck or broken), and ``decoding`` with it."""
        self.busy -= 1
        if decoding is not None and not decoding.done():
            self._stuck.add(decoding)
            decoding.add_done_callback(self._stuck.discard)
        if self._executor is None or len(self._stuck) < min(MAX_STUCK, self._size):
            return
        # Too many threads held by stuck decodes: later work gets fresh threads. The old pool
        # still runs what other sessions queued on it (cancelling would fail their utterances).
        old, self._executor = self._executor, ThreadPoolExecutor(self._size, thread_name_prefix="speech")
        self._stuck.clear()
        self.restarts += 1
        log.warning("speech.threads.replaced")
        old.shutdown(wait=False, cancel_futures=False)

    async def close(self) -> None:
        if self._spare is not None:
            self._spare.cancel()
            # gather, not suppress(CancelledError): our own cancellation must still propagate.
            await asyncio.gather(self._spare, return_exceptions=True)
        executor, self._executor = self._executor, None
        self._free.clear()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def _build_spare(self) -> None:
        try:
            rec = await self.run(self._create)
        except SpeechError as exc:
            log.warning("speech.spare_failed", error=str(exc))
            return
        if self._executor is not None:
            self._free.append(rec)
