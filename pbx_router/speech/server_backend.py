"""Recognition on a remote alphacep vosk-server (websocket protocol), so STT can scale out.

Protocol (vosk-server ``websocket/asr_server.py``): one connection per utterance; a text
``{"config": {...}}`` first; then binary PCM16 chunks, each answered by one JSON message
(``{"partial": ...}`` or, when the server ends a segment, ``{"result": [...], "text": ...}``);
finally the text ``{"eof" : 1}``, answered by the final result. Answers come in order, so the
answer to EOF is recognised by counting.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp

from pbx_router.log import get_logger
from pbx_router.speech.engines.vosk_engine import merge, parse_message
from pbx_router.speech.factory import RecognizerFactory
from pbx_router.speech.types import (
    EngineUnavailable,
    PoolClosed,
    RecognitionTimeout,
    SpeechError,
    Transcript,
    WorkerLost,
)

log = get_logger(__name__)
ENGINE = "vosk-server"
EOF_MESSAGE = '{"eof" : 1}'  # byte-exact: the reference server compares the string


class ServerStream:
    def __init__(self, backend: ServerBackend, ws: aiohttp.ClientWebSocketResponse,
                 sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.partial: Transcript | None = None
        self.malformed = 0  # answers that were not valid result JSON (dropped, counted)
        self._backend = backend
        self._ws = ws
        self._sent = 0  # messages sent after the config, each owed one answer
        self._answered = 0
        self._eof_at: int | None = None
        self._segments: list[Transcript] = []
        self._final: asyncio.Future[Transcript] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(), name="vosk-server-reader")

    async def feed(self, pcm: bytes) -> None:
        if not pcm or self._eof_at is not None:
            return
        if self._final.done():
            self._final.result()  # connection lost: raise it
        try:
            await self._ws.send_bytes(pcm)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            raise WorkerLost(f"vosk-server connection lost: {exc!r}") from None
        self._sent += 1

    async def finish(self, timeout: float = 5.0) -> Transcript:
        if self._eof_at is None and not self._final.done():
            self._sent += 1
            self._eof_at = self._sent
            try:
                await self._ws.send_str(EOF_MESSAGE)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                raise WorkerLost(f"vosk-server connection lost: {exc!r}") from None
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancel (3.11)
                return await asyncio.shield(self._final)
        except TimeoutError:
            self._backend.restarts += 1
            self._backend.stalls += 1  # this session's connection alone: nothing else shares it
            raise RecognitionTimeout(f"vosk-server gave no final result within {timeout:.1f}s") from None

    async def close(self) -> None:
        self._reader.cancel()
        # gather, not suppress(CancelledError): our own cancellation must still propagate.
        await asyncio.gather(self._reader, return_exceptions=True)
        await self._ws.close()
        self._fail(PoolClosed("session closed"))
        self._backend.busy -= 1

    def _fail(self, exc: SpeechError) -> None:
        if not self._final.done():
            self._final.set_exception(exc)
            self._final.exception()  # mark retrieved; finish() re-raises it if anyone asks

    async def _read_loop(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                self._answered += 1
                is_last = self._eof_at is not None and self._answered >= self._eof_at
                answer: Transcript | None
                try:
                    answer, is_partial = parse_message(msg.data, is_final=is_last)
                except ValueError:
                    self.malformed += 1
                    answer, is_partial = None, True
                if is_last:
                    parts = [*self._segments, *([answer] if answer is not None else [])]
                    result = merge(parts, ENGINE)
                    if not self._final.done():
                        self._final.set_result(result)
                    return
                if answer is None:
                    continue
                if not is_partial:
                    self._segments.append(answer)  # the server closed a segment mid-utterance
                    text = " ".join(s.text for s in self._segments if s.text)
                else:
                    text = " ".join([*(s.text for s in self._segments if s.text), answer.text]).strip()
                self.partial = Transcript(text=text, confidence=0.0, engine=ENGINE, is_final=False)
        finally:
            self._fail(WorkerLost("vosk-server closed the connection before the final result"))


class ServerBackend:
    def __init__(self, factory: RecognizerFactory, connect_timeout: float = 5.0) -> None:
        assert factory.server_url is not None
        self.sample_rate = factory.sample_rate
        self.restarts = 0
        self.stalls = 0
        self.busy = 0
        self._factory = factory
        self._url = factory.server_url
        self._connect_timeout = connect_timeout
        self._http: aiohttp.ClientSession | None = None

    @property
    def worker_pids(self) -> list[int]:
        return []

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()

    async def open(self) -> ServerStream:
        if self._http is None:
            raise PoolClosed("speech pool is closed")
        try:
            async with asyncio.timeout(self._connect_timeout):
                ws = await self._http.ws_connect(
                    self._url, timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
                    max_msg_size=1 << 20,
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.restarts += 1
            raise EngineUnavailable(f"vosk-server {self._url} unreachable: {exc!r}") from None
        config: dict[str, object] = {"sample_rate": self.sample_rate, "words": 1}
        if self._factory.phrases:
            config["phrase_list"] = [*self._factory.phrases, "[unk]"]
        await ws.send_str(json.dumps({"config": config}))
        self.busy += 1
        return ServerStream(self, ws, self.sample_rate)

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()
