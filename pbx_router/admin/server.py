"""The admin HTTP API (aiohttp): JSON in and out, bearer-token auth, loopback only by default.

Routes::

    GET    /healthz                           no token: 200 {"ok": true} while the process answers
    GET    /readyz                            no token: 200 when the ARI link and the database are up,
                                              else 503 {"ready": false, "not_ready": [...], "checks": ...}
                                              (the Docker HEALTHCHECK)
    GET    /health                            no token, kept for old health checks: always 200
                                              {"ok": true, "ready": ...}; use /readyz instead
    GET    /api/status                        readiness, ARI link, calls, rules, recorder
    GET    /api/calls | /api/queues | /api/agents | /api/overrides
    GET    /api/callbacks?status=open|all     callback requests (open = not done yet)
    POST   /api/callbacks/{id}/claim          {author}: "I am calling them back" (409 if someone else is)
    POST   /api/callbacks/{id}/done           {author, note?}: called back
    POST   /api/overrides                     {kind, scope, target?, author, reason, expires_at | ttl_minutes}
    DELETE /api/overrides/{id}                {author, reason}
    PUT    /api/agents/{endpoint}/presence    {presence, author, reason, expires_at? | ttl_minutes?}
    POST   /api/rules/reload

Safety, in layers: the server refuses to start with an empty token or on a non-loopback address
unless told otherwise; it then also refuses any connection whose peer is not loopback (a port
forward or a proxy must not turn "local" into "anyone"). Every error is ``{"error": "..."}`` with
a 4xx/5xx status, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import hmac
import ipaddress
import json
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from pbx_router.admin.backend import AdminBackend, Clock, utc_now
from pbx_router.admin.errors import (
    AdminConfigError,
    AdminError,
    InvalidRequestError,
    NotFoundError,
)
from pbx_router.admin.requests import parse_callback_action, parse_cancel, parse_new_override, parse_presence
from pbx_router.log import get_logger

log = get_logger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8089
MAX_BODY_BYTES = 64 * 1024  # the largest legitimate body is well under 2 KiB
MIN_TOKEN_LENGTH = 16
HEALTH_PATH = "/health"  # the old liveness+readiness answer, always 200: kept for compatibility
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
# Probes (Docker, systemd, a load balancer) carry no token; they learn nothing but up/ready.
_NO_TOKEN_PATHS = frozenset({HEALTH_PATH, HEALTHZ_PATH, READYZ_PATH})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_dumps = functools.partial(json.dumps, ensure_ascii=False, default=str)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback literals (127.0.0.0/8, ::1, ::ffff:127.x)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return False  # a host name: we cannot know where it resolves tomorrow
    return _loopback(address)


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _peer_is_loopback(request: web.Request) -> bool:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    if not isinstance(peer, tuple) or not peer:
        return False  # unknown peer: refuse rather than guess
    try:
        return _loopback(ipaddress.ip_address(str(peer[0]).split("%", 1)[0]))
    except ValueError:
        return False


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers, dumps=_dumps)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


async def _read_json(request: web.Request) -> Any:
    """The body as JSON; an absent/malformed one is a 400, an oversized one a 413."""
    if not request.body_exists:
        raise InvalidRequestError("a JSON object body is required")
    raw = await request.read()  # raises HTTPRequestEntityTooLarge past client_max_size
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidRequestError("the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise InvalidRequestError("the body is nested too deeply") from None


class AdminServer:
    """``async with AdminServer(backend, token=...) as server: ... server.url``."""

    def __init__(
        self,
        backend: AdminBackend,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        token: str = "",
        *,
        allow_remote: bool = False,
        allow_empty_token: bool = False,
        clock: Clock = utc_now,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not token and not allow_empty_token:
            raise AdminConfigError(
                "the admin API needs a token: set admin.token in the config or PBX_ROUTER_ADMIN_TOKEN "
                "(or disable the admin API with admin.enabled: false)"
            )
        if not allow_remote and not is_loopback_host(host):
            raise AdminConfigError(
                f"the admin API binds to loopback only; {host!r} is not a loopback address "
                "(use 127.0.0.1, or allow remote access explicitly)"
            )
        if token and len(token) < MIN_TOKEN_LENGTH:
            log.warning("admin_token_short", length=len(token), recommended=MIN_TOKEN_LENGTH)
        self.backend = backend
        self.host = host
        self.port = port
        self.allow_remote = allow_remote
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self._token = token.encode("utf-8")
        self._runner: web.AppRunner | None = None
        self.app = web.Application(
            client_max_size=max_body_bytes,
            middlewares=[self._errors, self._local_only, self._authorised],
        )
        self._routes(self.app)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the admin server is already started")
        # access_log=None: the API logs what matters itself (changes, refusals), not every poll.
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise AdminConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}") from exc
        self._runner = runner
        log.info("admin_api_listening", url=self.url, remote_allowed=self.allow_remote)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        """``http://host:port`` with the port actually bound (port 0 picks a free one)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("the admin server is not started")
        address = self._runner.addresses[0]
        host, port = str(address[0]), int(address[1])
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- middlewares (outermost first) -------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"the body is larger than {self.max_body_bytes} bytes")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            return error_response(exc.status, exc.reason.lower(), headers)
        except AdminError as exc:
            return error_response(exc.status, str(exc))
        except ValueError as exc:
            return error_response(400, str(exc))
        except Exception:  # an admin gets a JSON 500, the log gets the traceback
            log.exception("admin_api_error", method=request.method, path=request.path)
            return error_response(500, "internal error (details in the daemon log)")

    @web.middleware
    async def _local_only(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.allow_remote and not _peer_is_loopback(request):
            peer = request.transport.get_extra_info("peername") if request.transport is not None else None
            log.warning("admin_remote_refused", path=request.path, peer=str(peer[0]) if peer else None)
            return error_response(403, "the admin API accepts local connections only")
        return await handler(request)

    @web.middleware
    async def _authorised(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in _NO_TOKEN_PATHS or not self._token:
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # compare_digest on every request, even a malformed one: no timing hint about the token.
        ok = hmac.compare_digest(given.strip().encode("utf-8"), self._token) and scheme.lower() == "bearer"
        if not ok:
            log.warning("admin_unauthorised", method=request.method, path=request.path,
                        had_token=bool(given.strip()))
            return error_response(
                401, "missing or wrong token (Authorization: Bearer <token>)",
                {"WWW-Authenticate": 'Bearer realm="pbx-router"'},
            )
        return await handler(request)

    # -- routes ------------------------------------------------------------------------------

    def _routes(self, app: web.Application) -> None:
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(HEALTHZ_PATH, self._healthz)
        app.router.add_get(READYZ_PATH, self._readyz)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/calls", self._calls)
        app.router.add_get("/api/queues", self._queues)
        app.router.add_get("/api/callbacks", self._callbacks)
        app.router.add_post("/api/callbacks/{callback_id}/claim", self._claim_callback)
        app.router.add_post("/api/callbacks/{callback_id}/done", self._complete_callback)
        app.router.add_get("/api/agents", self._agents)
        app.router.add_get("/api/overrides", self._overrides)
        app.router.add_post("/api/overrides", self._add_override)
        app.router.add_delete("/api/overrides/{override_id}", self._cancel_override)
        # ".+": the endpoint holds a slash (PJSIP/agent1), sent url-encoded or not.
        app.router.add_put("/api/agents/{endpoint:.+}/presence", self._presence)
        app.router.add_post("/api/rules/reload", self._reload_rules)

    async def _health(self, request: web.Request) -> web.Response:
        try:
            ready = bool(self.backend.status().get("ready", False))
        except Exception:  # the process answers; whether it is ready is secondary
            log.exception("admin_health_status_failed")
            ready = False
        return _json({"ok": True, "ready": ready})

    async def _healthz(self, request: web.Request) -> web.Response:
        # Liveness only: the loop runs and answers. Nothing here may wait on Asterisk or the
        # database, or a slow dependency would get a healthy process restarted.
        return _json({"ok": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        try:
            readiness = await self.backend.readiness()
        except Exception:  # a failing check is "not ready", never a 500 the probe misreads
            log.exception("admin_readiness_failed")
            readiness = {"ready": False, "not_ready": ["readiness check failed (see the daemon log)"], "checks": {}}
        ready = bool(readiness.get("ready", False))
        return _json(readiness, status=200 if ready else 503)

    async def _status(self, request: web.Request) -> web.Response:
        return _json(self.backend.status())

    async def _calls(self, request: web.Request) -> web.Response:
        return _json({"calls": self.backend.calls_view()})

    async def _callbacks(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise InvalidRequestError("limit must be a whole number") from None
        if not 1 <= limit <= 1000:
            raise InvalidRequestError("limit must be between 1 and 1000")
        status = request.query.get("status", "open")
        if status not in ("open", "all"):
            raise InvalidRequestError("status must be 'open' (not done yet) or 'all'")
        return _json({"callbacks": await self.backend.callbacks_view(limit, include_done=status == "all")})

    async def _claim_callback(self, request: web.Request) -> web.Response:
        callback_id = _callback_id(request.match_info["callback_id"])
        action = parse_callback_action(await _read_json(request))
        return _json(await self.backend.claim_callback(callback_id, action.author))

    async def _complete_callback(self, request: web.Request) -> web.Response:
        callback_id = _callback_id(request.match_info["callback_id"])
        action = parse_callback_action(await _read_json(request))
        return _json(await self.backend.complete_callback(callback_id, action.author, action.note))

    async def _queues(self, request: web.Request) -> web.Response:
        return _json({"queues": self.backend.queues_view()})

    async def _agents(self, request: web.Request) -> web.Response:
        return _json({"agents": self.backend.agents_view()})

    async def _overrides(self, request: web.Request) -> web.Response:
        return _json({"overrides": self.backend.overrides_view()})

    async def _add_override(self, request: web.Request) -> web.Response:
        override = parse_new_override(await _read_json(request), self._now())
        stored = await self.backend.add_override(override)
        return _json(stored.to_dict(), status=201, headers={"Location": f"/api/overrides/{stored.id}"})

    async def _cancel_override(self, request: web.Request) -> web.Response:
        override_id = _normalise_id(request.match_info["override_id"])
        cancel = parse_cancel(await _read_json(request))
        if not await self.backend.cancel_override(override_id, cancel.author, cancel.reason):
            raise NotFoundError(f"no active override {override_id}")
        return _json({"cancelled": override_id})

    async def _presence(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        change = parse_presence(await _read_json(request), self._now())
        view = await self.backend.set_presence(endpoint, change.presence, change.author, change.reason,
                                               change.expires_at)
        return _json(view)

    async def _reload_rules(self, request: web.Request) -> web.Response:
        status = await self.backend.reload_rules()
        if not status.get("ok", False):
            return _json({"error": "the rules file was rejected; the rules in force are unchanged", **status},
                         status=422)
        return _json(status)

    def _now(self) -> dt.datetime:
        return self.clock()


def _callback_id(raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise NotFoundError(f"no callback request {raw.strip()!r} (ids are numbers, as listed)") from None
    if not 0 < value < 2**63:
        raise NotFoundError(f"no callback request {value}")
    return value


def _normalise_id(raw: str) -> str:
    """Override ids are uuid hex; accept the dashed form too (as PostgreSQL prints them)."""
    try:
        return uuid.UUID(raw.strip()).hex
    except ValueError:
        return raw.strip()
