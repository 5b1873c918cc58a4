"""A small typed ARI REST client on one aiohttp session.

Statuses map onto the error tree in :mod:`pbx_router.ari.errors`; Asterisk's error bodies carry
the text in ``message`` or, for some 500s, in ``error`` (both are read).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from pbx_router.ari.errors import (
    AriAuthError,
    AriBadRequest,
    AriConflict,
    AriError,
    AriGone,
    AriServerError,
    AriTimeout,
    AriUnavailable,
)
from pbx_router.ari.models import Bridge, Channel, Endpoint, Playback
from pbx_router.log import get_logger

_Params = Mapping[str, str | int | float | bool | None]


def _clean(params: _Params | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (params or {}).items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


log = get_logger("pbx_router.ari")


class AriClient:
    """REST half of ARI. Construct, ``await start()`` (or use ``async with``), then call."""

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        app: str,
        *,
        request_timeout: float = 5.0,
    ) -> None:
        self.base_url = url.rstrip("/").removesuffix("/ari")
        self.app = app
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self.auth_header = {"Authorization": f"Basic {token}"}
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            # One connection pool for every call; limit keeps a burst of calls from opening
            # hundreds of sockets to Asterisk's small HTTP server.
            connector = aiohttp.TCPConnector(limit=64, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(headers=self.auth_header, connector=connector)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AriClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("AriClient.start() was not called")
        return self._session

    # --- transport ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: _Params | None = None,
        json_body: Any = None,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return decoded JSON (or None for 204/empty) or raise an AriError."""
        url = f"{self.base_url}/ari{path}"
        t = aiohttp.ClientTimeout(total=timeout or self.request_timeout)
        try:
            async with self.session.request(
                method, url, params=_clean(params), json=json_body, timeout=t
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise AriTimeout("no answer from Asterisk", method=method, path=path) from None
        except aiohttp.ClientError as exc:
            raise AriUnavailable(f"cannot reach Asterisk: {exc}", method=method, path=path) from None
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                data = body.decode("utf-8", "replace")
        if status < 300:
            return data
        # Every refusal is visible when looking for requests that fail for nothing (ids only:
        # paths carry channel and bridge ids, never a number or a transcript).
        log.debug("ari_refused", method=method, path=path, status=status)
        raise self._error(status, data, method, path)

    @staticmethod
    def _error(status: int, data: Any, method: str, path: str) -> AriError:
        msg = ""
        if isinstance(data, dict):
            msg = str(data.get("message") or data.get("error") or "")
        elif isinstance(data, str):
            msg = data.strip()[:200]
        msg = msg or f"HTTP {status}"
        cls: type[AriError]
        if status == 404:
            cls = AriGone
        elif status == 409:
            cls = AriConflict
        elif status in (401, 403):
            cls = AriAuthError
        elif 400 <= status < 500:
            cls = AriBadRequest
        else:
            cls = AriServerError
        return cls(msg, status=status, method=method, path=path)

    # --- asterisk / applications -------------------------------------------------------------

    async def asterisk_info(self) -> dict[str, Any]:
        return await self.request("GET", "/asterisk/info")  # type: ignore[no-any-return]

    async def get_application(self) -> dict[str, Any]:
        return await self.request("GET", f"/applications/{self.app}")  # type: ignore[no-any-return]

    async def subscribe(self, event_source: str) -> dict[str, Any]:
        return await self.request(  # type: ignore[no-any-return]
            "POST", f"/applications/{self.app}/subscription", params={"eventSource": event_source}
        )

    async def unsubscribe(self, event_source: str) -> dict[str, Any]:
        return await self.request(  # type: ignore[no-any-return]
            "DELETE", f"/applications/{self.app}/subscription", params={"eventSource": event_source}
        )

    # --- channels ----------------------------------------------------------------------------

    async def list_channels(self) -> list[Channel]:
        data = await self.request("GET", "/channels")
        return [Channel.from_json(c) for c in data or []]

    async def get_channel(self, channel_id: str) -> Channel:
        return Channel.from_json(await self.request("GET", f"/channels/{channel_id}"))

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/ring")

    async def hangup(self, channel_id: str, reason: str | None = None) -> None:
        await self.request("DELETE", f"/channels/{channel_id}", params={"reason": reason})

    async def continue_in_dialplan(
        self, channel_id: str, context: str, extension: str = "s", priority: int = 1
    ) -> None:
        await self.request(
            "POST",
            f"/channels/{channel_id}/continue",
            params={"context": context, "extension": extension, "priority": priority},
        )

    async def play(
        self, channel_id: str, media: Sequence[str], playback_id: str | None = None, lang: str | None = None
    ) -> Playback:
        path = f"/channels/{channel_id}/play" + (f"/{playback_id}" if playback_id else "")
        data = await self.request("POST", path, params={"media": ",".join(media), "lang": lang})
        return Playback.from_json(data)

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{playback_id}")

    async def get_playback(self, playback_id: str) -> Playback:
        return Playback.from_json(await self.request("GET", f"/playbacks/{playback_id}"))

    async def originate(
        self,
        endpoint: str,
        *,
        app_args: Sequence[str] = (),
        channel_id: str | None = None,
        caller_id: str | None = None,
        timeout: int | None = None,
        variables: Mapping[str, str] | None = None,
        originator: str | None = None,
    ) -> Channel:
        body = {"variables": dict(variables)} if variables else None
        data = await self.request(
            "POST",
            "/channels",
            params={
                "endpoint": endpoint,
                "app": self.app,
                "appArgs": ",".join(app_args) if app_args else None,
                "channelId": channel_id,
                "callerId": caller_id,
                "timeout": timeout,
                "originator": originator,
            },
            json_body=body,
        )
        return Channel.from_json(data)

    async def create_channel(
        self,
        endpoint: str,
        *,
        app_args: Sequence[str] = (),
        channel_id: str | None = None,
        originator: str | None = None,
    ) -> Channel:
        data = await self.request(
            "POST",
            "/channels/create",
            params={
                "endpoint": endpoint,
                "app": self.app,
                "appArgs": ",".join(app_args) if app_args else None,
                "channelId": channel_id,
                "originator": originator,
            },
        )
        return Channel.from_json(data)

    async def dial(self, channel_id: str, *, caller: str | None = None, timeout: int | None = None) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/dial", params={"caller": caller, "timeout": timeout}
        )

    async def snoop(
        self,
        channel_id: str,
        *,
        spy: str = "in",
        whisper: str = "none",
        app_args: Sequence[str] = (),
        snoop_id: str | None = None,
    ) -> Channel:
        data = await self.request(
            "POST",
            f"/channels/{channel_id}/snoop",
            params={
                "spy": spy,
                "whisper": whisper,
                "app": self.app,
                "appArgs": ",".join(app_args) if app_args else None,
                "snoopId": snoop_id,
            },
        )
        return Channel.from_json(data)

    async def external_media(
        self,
        external_host: str,
        *,
        fmt: str = "slin16",
        channel_id: str | None = None,
        encapsulation: str = "rtp",
        transport: str = "udp",
        direction: str | None = None,
    ) -> Channel:
        data = await self.request(
            "POST",
            "/channels/externalMedia",
            params={
                "app": self.app,
                "external_host": external_host,
                "format": fmt,
                "channelId": channel_id,
                "encapsulation": encapsulation,
                "transport": transport,
                "direction": direction,
            },
        )
        return Channel.from_json(data)

    async def get_variable(self, channel_id: str, variable: str) -> str:
        data = await self.request("GET", f"/channels/{channel_id}/variable", params={"variable": variable})
        return str((data or {}).get("value", ""))

    async def set_variable(self, channel_id: str, variable: str, value: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/variable", params={"variable": variable, "value": value}
        )

    # --- bridges -----------------------------------------------------------------------------

    async def list_bridges(self) -> list[Bridge]:
        data = await self.request("GET", "/bridges")
        return [Bridge.from_json(b) for b in data or []]

    async def get_bridge(self, bridge_id: str) -> Bridge:
        return Bridge.from_json(await self.request("GET", f"/bridges/{bridge_id}"))

    async def create_bridge(
        self, bridge_type: str = "mixing", *, bridge_id: str | None = None, name: str | None = None
    ) -> Bridge:
        data = await self.request(
            "POST", "/bridges", params={"type": bridge_type, "bridgeId": bridge_id, "name": name}
        )
        return Bridge.from_json(data)

    async def get_or_create_bridge(self, bridge_id: str, bridge_type: str, name: str | None = None) -> Bridge:
        """Asterisk has no get-or-create: 409 on an existing id, so fall back to GET."""
        try:
            return await self.create_bridge(bridge_type, bridge_id=bridge_id, name=name)
        except AriConflict:
            return await self.get_bridge(bridge_id)

    async def delete_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    async def add_channel(self, bridge_id: str, channel_ids: Sequence[str] | str, role: str | None = None) -> None:
        ids = channel_ids if isinstance(channel_ids, str) else ",".join(channel_ids)
        await self.request("POST", f"/bridges/{bridge_id}/addChannel", params={"channel": ids, "role": role})

    async def remove_channel(self, bridge_id: str, channel_id: str) -> None:
        await self.request("POST", f"/bridges/{bridge_id}/removeChannel", params={"channel": channel_id})

    async def start_bridge_moh(self, bridge_id: str, moh_class: str = "default") -> None:
        await self.request("POST", f"/bridges/{bridge_id}/moh", params={"mohClass": moh_class})

    async def stop_bridge_moh(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}/moh")

    # --- endpoints ---------------------------------------------------------------------------

    async def list_endpoints(self) -> list[Endpoint]:
        data = await self.request("GET", "/endpoints")
        return [Endpoint.from_json(e) for e in data or []]

    async def get_endpoint(self, technology: str, resource: str) -> Endpoint:
        return Endpoint.from_json(await self.request("GET", f"/endpoints/{technology}/{resource}"))
