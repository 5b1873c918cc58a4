"""Recognisers in worker processes (PocketSphinx: it holds the GIL, so threads would serialise).

Each worker is ``python -m pbx_router.speech.worker`` talking ``protocol`` over its pipes; the
event loop only writes and reads frames. A worker that exits, crashes or is killed for being stuck
is replaced; the utterances it held fail with :class:`WorkerLost` so those calls fall back to the
keypad while every other call carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import sys
from collections.abc import Callable

from pbx_router.log import get_logger
from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.protocol import HEADER, Op, decode_header, encode
from pbx_router.speech.types import (
    EngineUnavailable,
    PoolClosed,
    RecognitionTimeout,
    SpeechError,
    Transcript,
    WorkerLost,
)

log = get_logger(__name__)


class ProcessStream:
    """One utterance on one worker process (the ``Session`` seen by the call flow)."""

    def __init__(self, worker: _Worker, session_id: int, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.partial: Transcript | None = None
        self._worker = worker
        self._id = session_id
        self._final: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        self._finish_sent = False
        self._closed = False

    async def feed(self, pcm: bytes) -> None:
        if self._final.done():
            self._final.result()  # re-raise WorkerLost etc.; feeding after finish is a no-op
            return
        if pcm:
            await self._worker.send(Op.FEED, self._id, pcm)

    async def finish(self, timeout: float = 5.0) -> Transcript:
        if not self._finish_sent and not self._final.done():
            self._finish_sent = True
            await self._worker.send(Op.FINISH, self._id)
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for returns a result that lands as the
            # call is cancelled, swallowing the cancel (a call that outlives the shutdown).
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._final)
        except TimeoutError:
            # The worker is stuck (or far behind): replace it; everyone on it falls back.
            self._worker.kill("stuck")
            raise RecognitionTimeout(f"no final transcript within {timeout:.1f}s") from None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._worker.sessions.pop(self._id, None)
        self._on_error(PoolClosed("session closed"))
        if self._worker.alive:
            with contextlib.suppress(SpeechError):
                await self._worker.send(Op.CLOSE, self._id)

    # --- called by the worker's reader ---
    def _on_partial(self, transcript: Transcript) -> None:
        self.partial = transcript

    def _on_final(self, transcript: Transcript) -> None:
        if not self._final.done():
            self._final.set_result(transcript)

    def _on_error(self, exc: SpeechError) -> None:
        if not self._final.done():
            self._final.set_exception(exc)
            self._final.exception()  # retrieved: nobody may be waiting on it yet


class _Worker:
    def __init__(self, factory_json: str, on_exit: Callable[[_Worker], None], prewarm: int = 1) -> None:
        self._prewarm = prewarm
        self.sessions: dict[int, ProcessStream] = {}
        self.pid: int | None = None
        self.alive = False
        self._factory_json = factory_json
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._kill_reason = ""

    async def start(self, timeout: float) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pbx_router.speech.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PBX_ROUTER_SPEECH_PREWARM": str(self._prewarm)},
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self.pid = self._proc.pid
        try:
            self._proc.stdin.write(encode(Op.CONFIG, 0, self._factory_json.encode()))
            await self._proc.stdin.drain()
            async with asyncio.timeout(timeout):
                length, op, _ = decode_header(await self._proc.stdout.readexactly(HEADER.size))
                payload = await self._proc.stdout.readexactly(length)
            if op is not Op.READY:
                raise EngineUnavailable(f"worker said {op.name} instead of READY")
            json.loads(payload)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            self._proc.kill()
            await self._proc.wait()
            raise EngineUnavailable(f"speech worker failed to start: {exc!r}") from None
        except BaseException:
            self._proc.kill()  # start abandoned (shutdown during start-up): no orphan worker
            raise
        self.alive = True
        self._reader = asyncio.create_task(self._read_loop(), name=f"speech-worker-{self.pid}")

    async def send(self, op: Op, session: int, payload: bytes = b"") -> None:
        if not self.alive or self._proc is None or self._proc.stdin is None:
            raise WorkerLost("speech worker is gone")
        try:
            self._proc.stdin.write(encode(op, session, payload))
            await self._proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise WorkerLost(f"speech worker pipe broke: {exc!r}") from None

    def kill(self, reason: str) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._kill_reason = reason
            self._proc.kill()

    async def close(self, timeout: float = 3.0) -> None:
        self.alive = False
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()  # EOF: the worker exits on its own
            try:
                async with asyncio.timeout(timeout):
                    await self._proc.wait()
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            # gather, not suppress(CancelledError): our own cancellation must still propagate.
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read_loop(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        closing = False
        try:
            while True:
                length, op, session = decode_header(await stdout.readexactly(HEADER.size))
                payload = await stdout.readexactly(length) if length else b""
                stream = self.sessions.get(session)
                if stream is None:
                    continue  # the session was closed meanwhile
                if op is Op.PARTIAL:
                    stream._on_partial(Transcript.from_json(json.loads(payload)))
                elif op is Op.FINAL:
                    stream._on_final(Transcript.from_json(json.loads(payload)))
                elif op is Op.ERROR:
                    stream._on_error(WorkerLost(f"recogniser error: {payload.decode(errors='replace')}"))
        except asyncio.CancelledError:
            closing = True
            raise
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            if not isinstance(exc, asyncio.IncompleteReadError):
                log.error("speech.worker.protocol_error", pid=self.pid, error=repr(exc))
                self.kill("protocol error")
        finally:
            was_alive, self.alive = self.alive, False
            lost = WorkerLost(f"speech worker {self.pid} exited ({self._kill_reason or 'crashed'})")
            for stream in list(self.sessions.values()):
                stream._on_error(lost)
            self.sessions.clear()
            if was_alive and not closing:
                self._on_exit(self)


class ProcessBackend:
    def __init__(self, factory: RecognizerFactory, workers: int, start_timeout: float,
                 expected_sessions: int = 0) -> None:
        self._prewarm = max(1, math.ceil(expected_sessions / max(1, workers)))
        self.sample_rate = factory.sample_rate
        self.restarts = 0
        self._factory = factory
        self._size = workers
        self._start_timeout = start_timeout
        self._workers: list[_Worker] = []
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.alive and w.pid is not None]

    @property
    def busy(self) -> int:
        return sum(len(w.sessions) for w in self._workers)

    async def start(self) -> None:
        self._factory = await asyncio.to_thread(self._factory.prepare)
        workers = [self._new_worker() for _ in range(self._size)]
        try:
            async with asyncio.TaskGroup() as group:
                for worker in workers:
                    group.create_task(worker.start(self._start_timeout))
        except* EngineUnavailable as eg:
            for worker in workers:
                await worker.close()
            raise eg.exceptions[0] from None
        self._workers = workers

    async def open(self) -> ProcessStream:
        if self._closing:
            raise PoolClosed("speech pool is closed")
        alive = [w for w in self._workers if w.alive]
        if not alive:
            raise WorkerLost("no speech worker is running")
        worker = min(alive, key=lambda w: len(w.sessions))
        session_id = next(self._ids)
        stream = ProcessStream(worker, session_id, self.sample_rate)
        worker.sessions[session_id] = stream
        await worker.send(Op.OPEN, session_id)
        return stream

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(w.close() for w in self._workers), return_exceptions=True)
        self._workers = []

    def _new_worker(self) -> _Worker:
        return _Worker(self._factory.to_json(), self._on_worker_exit, self._prewarm)

    def _on_worker_exit(self, worker: _Worker) -> None:
        if self._closing:
            return
        log.warning("speech.worker.lost", pid=worker.pid)
        task = asyncio.get_running_loop().create_task(self._replace(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replace(self, dead: _Worker) -> None:
        delay = 0.2
        while not self._closing:
            fresh = self._new_worker()
            try:
                await fresh.start(self._start_timeout)
            except EngineUnavailable as exc:
                log.error("speech.worker.restart_failed", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)  # back off: a broken model must not fork-bomb the box
                delay = min(delay * 2, 10.0)
                continue
            if self._closing:
                await fresh.close()
                return
            self._workers = [w for w in self._workers if w is not dead] + [fresh]
            self.restarts += 1
            log.info("speech.worker.replaced", old_pid=dead.pid, pid=fresh.pid)
            await dead.close(timeout=1.0)
            return
