"""A small blocking client of the admin API, for the CLI (no event loop, standard library only).

Every failure becomes one :class:`AdminClientError` whose message is a single line an admin can
act on ("cannot reach ... is the daemon running?", "the token was refused", the API's own error).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8089"


class AdminClientError(Exception):
    """One line for the admin; ``status`` is the HTTP status when the API answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise AdminClientError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.token = token or None
        self.timeout = timeout
        # No proxies: an http_proxy in the admin's environment must not carry the token (or a
        # request meant for this machine) somewhere else.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any | None = None) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str, body: Any | None = None) -> Any:
        return self.request("DELETE", path, body)

    def request(self, method: str, path: str, body: Any | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                return _decode(resp.read())
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AdminClientError(
                f"cannot reach the admin API at {self.url} ({reason}); is the daemon running?"
            ) from None


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AdminClientError("the admin API answered with something that is not JSON") from None


def _api_error(exc: urllib.error.HTTPError) -> AdminClientError:
    try:
        body = json.loads(exc.read().decode("utf-8"))
        message = str(body.get("error")) if isinstance(body, dict) and body.get("error") else exc.reason
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        message = str(exc.reason)
    if exc.code == 401:
        message = "the admin API refused the token (give --token, set PBX_ROUTER_ADMIN_TOKEN, or use -c CONFIG)"
    return AdminClientError(f"{message} (HTTP {exc.code})", exc.code)


def quote_endpoint(endpoint: str) -> str:
    """``PJSIP/agent1`` -> ``PJSIP%2Fagent1`` for a path segment."""
    return urllib.parse.quote(endpoint, safe="")
