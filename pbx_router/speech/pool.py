"""EnginePool: the one async entry point the call flow uses for recognition.

    pool = EnginePool.from_config(engine="pocketsphinx", workers=2, phrases=[...])
    await pool.start()
    async with pool.session() as s:
        await s.feed(pcm)            # native s16 PCM at s.sample_rate
        s.partial                    # latest partial Transcript or None
        t = await s.finish(timeout=5.0)
    await pool.close()

Recognition never runs on the event loop: PocketSphinx in worker processes, Vosk on threads,
vosk-server over the network. Any :class:`SpeechError` from a session means "this utterance is
lost, fall back to the keypad"; the pool itself heals. A session stuck past its deadline fails
alone (:class:`RecognitionTimeout`); a worker is replaced when it crashes, freezes as a whole or
stalls repeatedly (the policy: ``process_backend``'s module doc).

Audio is handed to the engine in batches of ``feed_batch_ms`` (default 100 ms), not per 20 ms RTP
frame: per-message cost (a pipe write and a worker wake-up, an executor hand-off, a websocket
round trip) then falls fivefold while the final transcript is no later (``finish`` flushes first).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from pbx_router.log import get_logger
from pbx_router.speech.factory import DEFAULT_ENGINE, RecognizerFactory
from pbx_router.speech.types import PoolClosed, Transcript

log = get_logger(__name__)


class Session(Protocol):
    sample_rate: int

    @property
    def partial(self) -> Transcript | None:
        """The latest partial hypothesis of the current utterance (None before the first)."""
        ...

    async def feed(self, pcm: bytes) -> None: ...

    async def finish(self, timeout: float = 5.0) -> Transcript: ...

    async def close(self) -> None: ...


class _Backend(Protocol):
    sample_rate: int
    restarts: int
    stalls: int

    @property
    def busy(self) -> int: ...

    @property
    def worker_pids(self) -> list[int]: ...

    async def start(self) -> None: ...

    async def open(self) -> Session: ...

    async def close(self) -> None: ...


class _BatchingSession:
    """Collects fed audio into ``batch_bytes`` pieces before the engine sees it (see module doc)."""

    def __init__(self, inner: Session, batch_bytes: int) -> None:
        self.sample_rate = inner.sample_rate
        self._inner = inner
        self._batch_bytes = batch_bytes
        self._pending = bytearray()

    @property
    def partial(self) -> Transcript | None:
        return self._inner.partial

    async def feed(self, pcm: bytes) -> None:
        self._pending += pcm
        if len(self._pending) >= self._batch_bytes:
            await self._flush()

    async def finish(self, timeout: float = 5.0) -> Transcript:
        await self._flush()
        return await self._inner.finish(timeout)

    async def close(self) -> None:
        self._pending.clear()
        await self._inner.close()

    async def _flush(self) -> None:
        if self._pending:
            # Keep whole samples together: an odd byte waits for its partner.
            cut = len(self._pending) - len(self._pending) % 2
            chunk = bytes(self._pending[:cut])
            del self._pending[:cut]
            if chunk:
                await self._inner.feed(chunk)


@dataclass(frozen=True, slots=True)
class PoolStats:
    engine: str
    workers: int  # processes (pocketsphinx) or threads (vosk); 0 for a remote server
    restarts: int  # workers replaced after a crash, a freeze or repeated stalls
    busy: int  # sessions open now
    stalls: int = 0  # utterances given up alone for missing their deadline (keypad fallback)


class EnginePool:
    def __init__(self, factory: RecognizerFactory, workers: int | None = None,
                 start_timeout: float = 60.0, expected_sessions: int = 0,
                 feed_batch_ms: int = 100) -> None:
        # expected_sessions: concurrent utterances to have decoders ready for at start (building
        # one costs ~100 ms for pocketsphinx, ~0.5 s for a Vosk recogniser's first decode).
        if feed_batch_ms < 0:
            raise ValueError(f"feed_batch_ms must not be negative, got {feed_batch_ms}")
        self.expected_sessions = expected_sessions
        self.feed_batch_ms = feed_batch_ms
        self.factory = factory
        self.workers = workers if workers and workers > 0 else (os.cpu_count() or 1)
        self._start_timeout = start_timeout
        self._backend: _Backend | None = None

    @classmethod
    def from_config(
        cls,
        engine: str = DEFAULT_ENGINE,
        model_path: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        phrases: Iterable[str] = (),
        server_url: str | None = None,
        sample_rate: int = 16000,
        language_model: str = "domain",
        options: dict[str, Any] | None = None,
        expected_sessions: int = 0,
        feed_batch_ms: int = 100,
    ) -> EnginePool:
        factory = RecognizerFactory(
            engine=engine, sample_rate=sample_rate,
            model_path=os.fspath(model_path) if model_path is not None else None,
            phrases=tuple(phrases), language_model=language_model, server_url=server_url,
            options=dict(options or {}),
        )
        return cls(factory, workers, expected_sessions=expected_sessions,
                   feed_batch_ms=feed_batch_ms)

    @property
    def engine(self) -> str:
        return self.factory.engine

    @property
    def sample_rate(self) -> int:
        return self.factory.sample_rate

    @property
    def stats(self) -> PoolStats:
        backend = self._backend
        return PoolStats(
            engine=self.engine,
            workers=0 if self.engine == "vosk-server" else self.workers,
            restarts=backend.restarts if backend else 0,
            busy=backend.busy if backend else 0,
            stalls=backend.stalls if backend else 0,
        )

    @property
    def worker_pids(self) -> list[int]:
        """Live worker process ids (pocketsphinx only): for operators and crash tests."""
        return self._backend.worker_pids if self._backend else []

    async def start(self) -> None:
        """Start workers and load models; returns when the pool can take calls.
        Raises EngineUnavailable if the engine cannot start at all."""
        if self._backend is not None:
            return
        backend: _Backend
        if self.engine in ("moonshine", "pocketsphinx"):
            from pbx_router.speech.process_backend import ProcessBackend

            backend = ProcessBackend(self.factory, self.workers, self._start_timeout,
                                     self.expected_sessions)
        elif self.engine == "vosk":
            from pbx_router.speech.thread_backend import ThreadBackend

            backend = ThreadBackend(self.factory, self.workers, self.expected_sessions)
        else:
            from pbx_router.speech.server_backend import ServerBackend

            backend = ServerBackend(self.factory)
        await backend.start()
        self._backend = backend
        log.info("speech.pool.started", engine=self.engine, workers=self.stats.workers)

    async def close(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.close()

    async def __aenter__(self) -> EnginePool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        """One utterance (or a call's worth of them, finishing each). Always closed on exit."""
        if self._backend is None:
            raise PoolClosed("speech pool is not started")
        stream: Session = await self._backend.open()
        batch_bytes = self.sample_rate * 2 * self.feed_batch_ms // 1000
        if batch_bytes > 0:
            stream = _BatchingSession(stream, batch_bytes)
        try:
            yield stream
        finally:
            await stream.close()
