"""A small local vosk-server: alphacep's websocket protocol over real Vosk, for tests and demos.

Same behaviour as ``vosk-server/websocket/asr_server.py``: a text ``{"config": {...}}`` (keys
``sample_rate``, ``phrase_list``, ``words``, ``max_alternatives``) may come first; each binary
chunk is answered with a partial or a result JSON; the text ``{"eof" : 1}`` is answered with the
final result and the connection is closed. Decoding runs on a thread pool (Vosk releases the GIL).

    async with VoskServer(model_path) as server:
        server.url  # ws://127.0.0.1:PORT
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from pbx_router.log import get_logger
from pbx_router.speech.engines.vosk_engine import load_model

log = get_logger(__name__)
EOF_MESSAGE = '{"eof" : 1}'


def _process(rec: Any, message: bytes | str) -> tuple[str, bool]:
    if message == EOF_MESSAGE:
        return rec.FinalResult(), True
    if rec.AcceptWaveform(message):
        return rec.Result(), False
    return rec.PartialResult(), False


class VoskServer:
    def __init__(self, model_path: Path, host: str = "127.0.0.1", port: int = 0,
                 sample_rate: float = 8000.0, threads: int = 2) -> None:
        self.model_path = model_path
        self.connections = 0
        self._host, self._port = host, port
        self._default_rate = sample_rate
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="vosk-server")
        self._runner: web.AppRunner | None = None
        self._model: Any = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.url = ""

    async def start(self) -> None:
        self._model = await asyncio.get_running_loop().run_in_executor(
            self._executor, load_model, self.model_path)
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = int(self._runner.addresses[0][1])  # the port the OS chose when asked for 0
        self.url = f"ws://{self._host}:{port}/"

    async def close(self) -> None:
        if self._runner is not None:
            # Open streams would hold cleanup until its timeout: end them like a server going down.
            for ws in list(self._sockets):
                await ws.close(code=1001, message=b"server shutdown")
            await self._runner.cleanup()
            self._runner = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def __aenter__(self) -> VoskServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:

        ws = web.WebSocketResponse(max_msg_size=1 << 22)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.add(ws)
        try:
            return await self._serve(ws)
        finally:
            self._sockets.discard(ws)

    async def _serve(self, ws: web.WebSocketResponse) -> web.WebSocketResponse:
        import vosk

        loop = asyncio.get_running_loop()
        rec: Any = None
        rate, phrases, words, alternatives = self._default_rate, None, True, 0
        async for msg in ws:
            if msg.type is WSMsgType.TEXT and "config" in msg.data:
                try:
                    config = json.loads(msg.data)["config"]
                    phrases = config.get("phrase_list", phrases)
                    rate = float(config.get("sample_rate", rate))
                    words = bool(config.get("words", words))
                    alternatives = int(config.get("max_alternatives", alternatives))
                except (ValueError, TypeError, KeyError, AttributeError):
                    await ws.close(code=1003, message=b"bad config")
                    break
                continue
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            if rec is None:
                rec = (vosk.KaldiRecognizer(self._model, rate, json.dumps(phrases))
                       if phrases else vosk.KaldiRecognizer(self._model, rate))
                rec.SetWords(words)
                rec.SetMaxAlternatives(alternatives)
            response, stop = await loop.run_in_executor(self._executor, _process, rec, msg.data)
            await ws.send_str(response)
            if stop:
                break
        await ws.close()
        return ws
