"""Recognisers in worker processes (PocketSphinx: it holds the GIL, so threads would serialise).

Each worker is ``python -m pbx_router.speech.worker`` talking ``protocol`` over its pipes; the
event loop only writes and reads frames. A worker that exits or crashes is replaced; the
utterances it held fail with :class:`WorkerLost` so those calls fall back to the keypad while
every other call carries on.

Stalls (the policy):

* **A stuck session is aborted alone.** Every utterance has a deadline (``finish(timeout)``, the
  call's ``recognition_timeout``, covering the hand-over of the last audio too). When it passes,
  that session fails with :class:`RecognitionTimeout` (its call goes on with the keypad), the
  worker is told to drop it (``ABORT``) and keeps serving its other sessions, each of which
  decodes on its own thread there.
* **A worker is replaced only after repeated or global stalls:** when it does not answer a
  ``PING`` within ``PING_TIMEOUT_S`` (it is frozen as a whole: nothing it holds would finish; it
  is killed at once and its sessions fail with :class:`WorkerLost`), checked every
  ``WATCHDOG_S`` while it holds sessions and right after each stall; or when ``MAX_STALLS``
  sessions missed their deadline on it within ``STALL_WINDOW_S``, or ``MAX_STUCK`` aborted
  decodes are still stuck in it (each holds a thread and a decoder for good). Such a worker is
  *retired*, not killed: a fresh one takes new sessions at once, the old one finishes the
  utterances it holds (up to ``RETIRE_GRACE_S``) and is then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

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

PING_TIMEOUT_S = 3.0  # a worker that cannot answer a ping this long is frozen as a whole
WATCHDOG_S = 1.0  # how often a worker holding sessions is pinged
MAX_STALLS = 3  # sessions past their deadline on one worker within STALL_WINDOW_S: retire it
STALL_WINDOW_S = 300.0
MAX_STUCK = 2  # aborted decodes still stuck in one worker: retire it
RETIRE_GRACE_S = 30.0  # how long a retired worker may finish the utterances it holds


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
        self._aborted = False

    async def feed(self, pcm: bytes) -> None:
        if self._final.done():
            self._final.result()  # re-raise WorkerLost etc.; feeding after finish is a no-op
            return
        if pcm:
            await self._worker.send(Op.FEED, self._id, pcm)

    async def finish(self, timeout: float = 5.0) -> Transcript:
        try:
            # The deadline covers handing over the last audio too: a worker that stopped reading
            # its pipe must not hold the caller past it. (asyncio.timeout, not wait_for: on 3.11
            # wait_for can swallow a cancel that lands with the result.)
            async with asyncio.timeout(timeout):
                if not self._finish_sent and not self._final.done():
                    self._finish_sent = True
                    await self._worker.send(Op.FINISH, self._id)
                return await asyncio.shield(self._final)
        except TimeoutError:
            # This utterance is stuck (or far behind): it alone is given up. Whether the worker
            # as a whole is stuck is the backend's call (see the module doc).
            error = RecognitionTimeout(f"no final transcript within {timeout:.1f}s")
            self._on_error(error)
            await self._abort()
            raise error from None

    async def _abort(self) -> None:
        if self._aborted:
            return
        self._aborted = True
        worker = self._worker
        worker.sessions.pop(self._id, None)
        worker.stalled()
        if worker.alive:
            with contextlib.suppress(SpeechError, TimeoutError):
                async with asyncio.timeout(1.0):
                    await worker.send(Op.ABORT, self._id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._worker.sessions.pop(self._id, None)
        self._on_error(PoolClosed("session closed"))
        if self._worker.alive and not self._aborted:
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
    def __init__(self, factory_json: str, on_exit: Callable[[_Worker], None], prewarm: int = 1,
                 on_stall: Callable[[_Worker], None] | None = None) -> None:
        self._prewarm = prewarm
        self.sessions: dict[int, ProcessStream] = {}
        self.pid: int | None = None
        self.alive = False
        self.retiring = False  # takes no new sessions (see the module doc)
        self.stalls: deque[float] = deque()  # monotonic times of sessions that missed their deadline
        self._on_stall = on_stall
        self._pongs: deque[asyncio.Future[dict[str, int]]] = deque()
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

    def stalled(self) -> None:
        """One of this worker's sessions missed its deadline (and was aborted)."""
        self.stalls.append(time.monotonic())
        if self._on_stall is not None:
            self._on_stall(self)

    def recent_stalls(self) -> int:
        """Sessions that missed their deadline on this worker within ``STALL_WINDOW_S``."""
        horizon = time.monotonic() - STALL_WINDOW_S
        while self.stalls and self.stalls[0] < horizon:
            self.stalls.popleft()
        return len(self.stalls)

    async def ping(self, timeout: float) -> dict[str, int]:
        """The worker's answer to a PING: ``{"stuck": n, "sessions": n}``. TimeoutError if it
        does not answer in time (frozen), WorkerLost if it is gone."""
        fut: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._pongs.append(fut)
        try:
            async with asyncio.timeout(timeout):
                await self.send(Op.PING, 0)
                return await asyncio.shield(fut)
        finally:
            if not fut.done():
                fut.cancel()
            with contextlib.suppress(ValueError):
                self._pongs.remove(fut)

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
                if op is Op.PONG:
                    while self._pongs:  # answers come in order; a given-up ping has left the line
                        waiter = self._pongs.popleft()
                        if not waiter.done():
                            waiter.set_result(json.loads(payload))
                            break
                    continue
                stream = self.sessions.get(session)
                if stream is None:
                    continue  # the session was closed (or aborted) meanwhile
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
            for waiter in self._pongs:
                if not waiter.done():
                    waiter.set_exception(lost)
                    waiter.exception()
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
        self.stalls = 0  # sessions aborted for missing their deadline
        self._checking: set[_Worker] = set()

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
        self._spawn(self._watchdog())

    async def open(self) -> ProcessStream:
        if self._closing:
            raise PoolClosed("speech pool is closed")
        alive = [w for w in self._workers if w.alive and not w.retiring]
        # While its successor starts, a retiring worker still beats no worker at all.
        alive = alive or [w for w in self._workers if w.alive]
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
        return _Worker(self._factory.to_json(), self._on_worker_exit, self._prewarm, self._on_stall)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_worker_exit(self, worker: _Worker) -> None:
        if self._closing or worker.retiring:
            return
        log.warning("speech.worker.lost", pid=worker.pid)
        self._spawn(self._replace(worker))

    # --- stalls (the policy is in the module doc) ---------------------------------------------

    def _on_stall(self, worker: _Worker) -> None:
        self.stalls += 1
        log.warning("speech.session.stalled", pid=worker.pid, stalls_in_window=worker.recent_stalls())
        if not self._closing:
            self._spawn(self._check(worker))

    async def _watchdog(self) -> None:
        while not self._closing:
            await asyncio.sleep(WATCHDOG_S)
            for worker in list(self._workers):
                if worker.alive and worker.sessions:
                    self._spawn(self._check(worker))

    async def _check(self, worker: _Worker) -> None:
        if worker in self._checking or not worker.alive:
            return
        self._checking.add(worker)
        try:
            state = await worker.ping(PING_TIMEOUT_S)
        except TimeoutError:
            # Frozen as a whole: nothing it holds will finish. Killing it fails those sessions
            # now (WorkerLost) instead of at each one's deadline, and its reader replaces it.
            log.error("speech.worker.frozen", pid=worker.pid, sessions=len(worker.sessions))
            worker.kill(f"no answer to a ping within {PING_TIMEOUT_S:.0f}s")
            return
        except SpeechError:
            return  # gone already: its reader replaces it
        finally:
            self._checking.discard(worker)
        stuck = int(state.get("stuck", 0))
        if worker.retiring or self._closing:
            return
        stalls = worker.recent_stalls()
        if stuck >= MAX_STUCK or stalls >= MAX_STALLS:
            log.warning("speech.worker.retired", pid=worker.pid, stuck=stuck, stalls_in_window=stalls)
            worker.retiring = True
            self._spawn(self._retire(worker))

    async def _retire(self, old: _Worker) -> None:
        """Start the successor, let ``old`` finish what it holds, then close it."""
        await self._replace(old, keep_old=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETIRE_GRACE_S
        # Polled: four conditions owned by different tasks; none is worth an Event of its own.
        while old.sessions and old.alive and loop.time() < deadline and not self._closing:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        self._workers = [w for w in self._workers if w is not old]
        await old.close(timeout=1.0)

    async def _replace(self, dead: _Worker, keep_old: bool = False) -> None:
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
            self._workers = [w for w in self._workers if w is not dead or keep_old] + [fresh]
            self.restarts += 1
            log.info("speech.worker.replaced", old_pid=dead.pid, pid=fresh.pid)
            if not keep_old:
                await dead.close(timeout=1.0)
            return
