"""The bar: no token, no answer (401); loopback only unless an admin explicitly allows more."""

from __future__ import annotations

import socket

import aiohttp
import pytest

from pbx_router.admin import AdminConfigError, AdminServer, InMemoryBackend

from .conftest import TOKEN, Api, make_api

API_ROUTES = [
    ("GET", "/api/status"),
    ("GET", "/api/calls"),
    ("GET", "/api/queues"),
    ("GET", "/api/agents"),
    ("GET", "/api/overrides"),
    ("POST", "/api/overrides"),
    ("DELETE", "/api/overrides/0123456789abcdef0123456789abcdef"),
    ("PUT", "/api/agents/PJSIP%2Fagent1/presence"),
    ("POST", "/api/rules/reload"),
    ("GET", "/api/callbacks"),
    ("POST", "/api/callbacks/1/claim"),
    ("POST", "/api/callbacks/1/done"),
]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
async def test_every_api_route_refuses_a_missing_or_wrong_token(api: Api, method: str, path: str) -> None:
    body = {"presence": "paused", "author": "x", "reason": "y"}
    for token, headers in [(None, None), ("wrong-token-0123456789abcdef", None), (TOKEN[:-1], None),
                           (None, {"Authorization": f"Basic {TOKEN}"}), (None, {"Authorization": TOKEN})]:
        answer = await api(method, path, body, token=token, headers=headers)
        assert answer.status == 401, (token, headers)
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert "token" in answer.body["error"]
    # ... and the right token gets past the door (whatever the route then says).
    answer = await api(method, path, body)
    assert answer.status != 401


async def test_health_needs_no_token_and_says_whether_the_daemon_is_ready(
    api: Api, backend: InMemoryBackend
) -> None:
    answer = await api("GET", "/health", token=None)
    assert (answer.status, answer.body) == (200, {"ok": True, "ready": True})
    backend.ready = False
    assert (await api("GET", "/health", token=None)).body == {"ok": True, "ready": False}


async def test_the_server_listens_on_loopback_by_default(backend: InMemoryBackend) -> None:
    async with AdminServer(backend, port=0, token=TOKEN) as server:
        assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.2", "clinic-pbx.example.org", ""])
def test_a_non_loopback_bind_is_refused_unless_allowed(backend: InMemoryBackend, host: str) -> None:
    with pytest.raises(AdminConfigError, match="loopback"):
        AdminServer(backend, host=host, token=TOKEN)
    AdminServer(backend, host=host or "0.0.0.0", token=TOKEN, allow_remote=True)  # explicit: accepted


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(backend: InMemoryBackend, host: str) -> None:
    AdminServer(backend, host=host, token=TOKEN)


def test_an_empty_token_refuses_to_start(backend: InMemoryBackend) -> None:
    with pytest.raises(AdminConfigError, match="token"):
        AdminServer(backend, token="")


async def test_an_empty_token_explicitly_allowed_opens_the_api(backend: InMemoryBackend) -> None:
    async with AdminServer(backend, port=0, token="", allow_empty_token=True) as server, \
            aiohttp.ClientSession() as session:
        answer = await make_api(server.url, session)("GET", "/api/status", token=None)
    assert answer.status == 200


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the route to a documentation net)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # UDP connect sends nothing; it only picks a source
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


@pytest.mark.parametrize("allow_remote", [False, True])
async def test_a_connection_from_a_non_loopback_address_is_refused(
    backend: InMemoryBackend, allow_remote: bool
) -> None:
    source = _non_loopback_address()
    if source is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    # Bound to 127.0.0.1 either way: Linux lets a local non-loopback source reach it, which is
    # what a port forward or a local proxy looks like to the server.
    async with AdminServer(backend, port=0, token=TOKEN, allow_remote=allow_remote) as server, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as session:
        answer = await make_api(server.url, session)("GET", "/api/status")
    if allow_remote:
        assert answer.status == 200
    else:
        assert answer.status == 403
        assert "local" in answer.body["error"]


async def test_errors_are_json_never_a_traceback(api: Api, backend: InMemoryBackend) -> None:
    def broken() -> list[dict[str, object]]:
        raise RuntimeError("database password is hunter2")

    backend.calls_view = broken  # type: ignore[method-assign]
    answer = await api("GET", "/api/calls")
    assert answer.status == 500
    assert "hunter2" not in str(answer.body) and "Traceback" not in str(answer.body)
    assert answer.body["error"].startswith("internal error")

    missing = await api("GET", "/api/nothing-here")
    assert (missing.status, missing.body) == (404, {"error": "not found"})
    wrong_method = await api("PATCH", "/api/overrides")
    assert wrong_method.status == 405 and "error" in wrong_method.body
    assert "POST" in wrong_method.headers["Allow"]


async def test_an_oversized_body_is_refused_with_413(api: Api) -> None:
    answer = await api("POST", "/api/overrides", raw=b'{"reason": "' + b"x" * 100_000 + b'"}')
    assert answer.status == 413
    assert "larger than" in answer.body["error"]
