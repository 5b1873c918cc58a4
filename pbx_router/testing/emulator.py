"""``AsteriskEmulator``: an in-process Asterisk 22 ARI server (REST + events websocket + RTP).

    async with AsteriskEmulator(username="pbx-router", password="secret") as pbx:
        call = await pbx.place_call(caller_number="+15551230000", dialled="100")
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import TracebackType

from aiohttp import WSMsgType, web

from pbx_router.log import get_logger
from pbx_router.testing import wire
from pbx_router.testing.apps import EventSocket
from pbx_router.testing.audio import CallerAudio
from pbx_router.testing.call import POLL_SECONDS, SimulatedCall
from pbx_router.testing.http_api import AriRoutes
from pbx_router.testing.model import RequestFault
from pbx_router.testing.pbx import DEFAULT_APP, Pbx

log = get_logger(__name__)


class AsteriskEmulator(Pbx):
    def __init__(self, username: str = "pbx-router", password: str = "secret",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._sockets: set[EventSocket] = set()
        self.faults: list[RequestFault] = []

    # ----------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> AsteriskEmulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        self._runner = web.AppRunner(AriRoutes(self).build(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        log.info("emulator_started", port=self._port)

    async def stop(self) -> None:
        await self._close_sockets()
        self._wipe()
        await self.cancel_tasks()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self) -> None:
        """Asterisk restarts: sockets dropped, every channel/bridge gone, same port."""
        await self._close_sockets()
        self._wipe()
        await self.cancel_tasks()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.start()

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    # ----------------------------------------------------------------- websockets
    @property
    def ws_connected(self) -> bool:
        app = self.apps.get(DEFAULT_APP)
        return app is not None and app.active

    async def wait_for_websocket(self, timeout: float = 5.0, app: str = DEFAULT_APP) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (app in self.apps and self.apps[app].active):
            if loop.time() >= deadline:
                raise TimeoutError(f"no events websocket for {app!r} within {timeout}s")
            await asyncio.sleep(POLL_SECONDS)

    async def events_socket(self, request: web.Request) -> web.StreamResponse:
        names = [n for n in request.query.get("app", "").split(",") if n]
        if not names:
            return web.Response(status=400, text=wire.HTML_MISSING_APP, content_type="text/html",
                                headers={"Server": wire.SERVER_HEADER,
                                         "Cache-Control": "no-cache, no-store"})
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        socket = EventSocket(ws, names)
        socket.start()
        self._sockets.add(socket)
        subscribe_all = request.query.get("subscribeAll", "").lower() in ("true", "1", "yes")
        for name in names:
            stasis_app = self.app(name)
            previous = stasis_app.socket
            if previous is not None:
                # The old socket hears ApplicationReplaced, then nothing, but stays open.
                stasis_app.send({"type": "ApplicationReplaced", "timestamp": wire.timestamp(),
                                 "application": name, "asterisk_id": wire.ASTERISK_ID})
                previous.silenced = True
            stasis_app.socket = socket
            stasis_app.subscribe_all = subscribe_all
        log.info("emulator_ws_connected", apps=names)
        try:
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break  # the client side is gone; fall through to deactivation
        finally:
            for name in names:
                app = self.apps.get(name)
                if app is not None and app.socket is socket:
                    app.socket = None  # "Deactivating Stasis app": channels stay in Stasis
            self._sockets.discard(socket)
            await socket.close()
        return ws

    async def _close_sockets(self) -> None:
        for app in self.apps.values():
            app.socket = None
        sockets = list(self._sockets)
        self._sockets.clear()
        for socket in sockets:
            await socket.close()

    async def drop_websockets(self) -> None:
        """Close every events socket from the server side; the apps' channels stay in Stasis."""
        await self._close_sockets()

    async def send_raw(self, text: str, app: str = DEFAULT_APP) -> None:
        """Push a raw text frame (malformed JSON, unknown event types) to the app's socket."""
        target = self.apps.get(app)
        if target is None or target.socket is None:
            raise RuntimeError(f"no events websocket connected for {app!r}")
        target.socket.push(text)
        await target.socket.flush()

    # ----------------------------------------------------------------- faults
    def fail_requests(self, method: str, path: str, *, status: int = 500,
                      message: str = "Internal Server Error", times: int | None = None) -> RequestFault:
        """From now on, answer ``method path`` (fnmatch, e.g. ``/ari/channels/*/continue``) with
        ``status`` and ``{"message": message}`` without performing it; ``times`` requests, or
        all until ``fault`` is removed from ``faults``."""
        fault = RequestFault(method, path, status, message, times)
        self.faults.append(fault)
        return fault

    # ----------------------------------------------------------------- simulated callers
    async def place_call(self, caller_number: str = "+15551230000", caller_name: str = "",
                         dialled: str = "100", endpoint: str = "PJSIP/softphone",
                         context: str = "from-pstn", app_args: list[str] | None = None,
                         audio: bytes | Path | str | None = None, audio_at: float = 0.0,
                         dtmf: list[tuple[float, str]] | None = None,
                         hangup_after: float | None = None,
                         app: str = DEFAULT_APP) -> SimulatedCall:
        """An inbound call reaching ``Stasis(app,<app_args or dialled>)``; its StasisStart is
        on the websocket when this returns (or its fate is "stasis_failed")."""
        prepared = None
        if audio is not None:
            prepared = await asyncio.to_thread(CallerAudio.load, audio)
        call = self.place_inbound(caller_number=caller_number, caller_name=caller_name,
                                  dialled=dialled, endpoint=endpoint, context=context,
                                  app_args=app_args, app_name=app, audio=prepared,
                                  audio_at=audio_at, dtmf=list(dtmf or []),
                                  hangup_after=hangup_after)
        await self.flush()
        return call
