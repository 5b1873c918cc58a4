"""Recognisers on a thread pool (Vosk: Kaldi releases the GIL, so threads decode in parallel).

Threads cannot be killed: a stuck recogniser is abandoned (its utterance fails with
RecognitionTimeout) and the executor is replaced so later calls get fresh threads.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from pbx_router.log import get_logger
from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.types import PoolClosed, Recognizer, RecognitionTimeout, Transcript

log = get_logger(__name__)


class ThreadStream:
    def __init__(self, backend: ThreadBackend, recognizer: Recognizer) -> None:
        self.sample_rate = recognizer.sample_rate
        self.partial: Transcript | None = None
        self._backend = backend
        self._rec: Recognizer | None = recognizer
        self._lock = asyncio.Lock()  # a recogniser is single-threaded: one call into it at a time
        self._done = False

    async def feed(self, pcm: bytes) -> None:
        if self._done or not pcm:
            return
        async with self._lock:
            assert self._rec is not None
            partial = await self._backend.run(self._rec.accept, pcm)
        if partial is not None:
            self.partial = partial

    async def finish(self, timeout: float = 5.0) -> Transcript:
        if self._rec is None:
            raise PoolClosed("session closed")
        try:
            async with asyncio.timeout(timeout):
                async with self._lock:
                    result = await self._backend.run(self._rec.final)
        except TimeoutError:
            self._rec = None  # never hand a possibly-stuck recogniser to another call
            self._backend.replace_executor()
            raise RecognitionTimeout(f"no final transcript within {timeout:.1f}s") from None
        self._done = True
        return result

    async def close(self) -> None:
        rec, self._rec = self._rec, None
        if rec is None:
            return
        if not self._done:
            async with self._lock:
                await self._backend.run(rec.reset)
        self._backend.release(rec)


class ThreadBackend:
    def __init__(self, factory: RecognizerFactory, workers: int) -> None:
        self.sample_rate = factory.sample_rate
        self.restarts = 0
        self.busy = 0
        self._factory = factory
        self._size = workers
        self._executor: ThreadPoolExecutor | None = None
        self._free: list[Recognizer] = []

    @property
    def worker_pids(self) -> list[int]:
        return []

    async def run(self, fn, *args):  # type: ignore[no-untyped-def]
        if self._executor is None:
            raise PoolClosed("speech pool is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def start(self) -> None:
        self._executor = ThreadPoolExecutor(self._size, thread_name_prefix="speech")
        # Load the model now (seconds for big ones) so the first caller does not pay for it.
        self._free.append(await self.run(self._factory.create))

    async def open(self) -> ThreadStream:
        rec = self._free.pop() if self._free else await self.run(self._factory.create)
        self.busy += 1
        return ThreadStream(self, rec)

    def release(self, rec: Recognizer) -> None:
        self.busy -= 1
        self._free.append(rec)

    def replace_executor(self) -> None:
        old, self._executor = self._executor, ThreadPoolExecutor(self._size, thread_name_prefix="speech")
        self.busy -= 1
        self.restarts += 1
        log.warning("speech.threads.replaced")
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        self._free.clear()
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
