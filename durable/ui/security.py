"""Who may use the dashboard: the token, the Host header guard and the CSRF check.

- ``durable ui`` prints a link with a random token, as Jupyter does. Opening it sets the
  token as an HttpOnly, SameSite=Strict cookie; every page (and ``/metrics``, which also
  takes ``Authorization: Bearer TOKEN``) needs it. Static files do not.
- The Host header must name the address the server listens on (or localhost): a page on
  another site that rebinds its DNS name to 127.0.0.1 gets 400, not the dashboard.
- Actions are POST only and carry a CSRF token derived from the session token, checked
  with the request's Origin when the browser sends one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "durable_ui_token"
#: On every response: scripts and styles only from this server, never inside a frame
#: (a page of another site cannot overlay the action buttons), no MIME sniffing.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; "
     b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
     b"form-action 'self'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # not "no-referrer": with it, browsers send "Origin: null" on our own form posts
    (b"referrer-policy", b"same-origin"),
]
CSRF_FIELD = "csrf"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    """A fresh random token for one server."""
    return secrets.token_urlsafe(24)


def csrf_for(token: str) -> str:
    """The CSRF token of a session: only a page served to the token holder contains it."""
    return hmac.new(token.encode(), b"durable-ui-csrf", hashlib.sha256).hexdigest()[:32]


def cookie_name(port: int) -> str:
    """The token's cookie, one per port: browsers share cookies across the ports of a host,
    so two dashboards on one machine would otherwise log each other out."""
    return f"{COOKIE}_{port}"


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """Host header values accepted for a server bound to ``host``:``port``."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host else host)
    return frozenset({*names, *(f"{name}:{port}" for name in names)})


class Guard:
    """ASGI middleware: Host check, then the token (query, cookie or bearer header)."""

    def __init__(self, app: ASGIApp, token: str, hosts: frozenset[str], cookie: str) -> None:
        self.app, self.token, self.hosts, self.cookie = app, token, hosts, cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if headers.get("host", "") not in self.hosts:
            await _plain(send, 400, "Host header not allowed: durable ui answers only to the "
                         "address it listens on (a guard against DNS rebinding). Use the "
                         "printed link, or start it with --host NAME.")
            return
        path: str = scope.get("path", "")
        if path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                await _plain(send, 403, "Wrong token: use the link durable ui printed.")
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", (path + (f"?{rest}" if rest else "")).encode("latin-1")),
                (b"set-cookie", f"{self.cookie}={self.token}; Path=/; HttpOnly; "
                 "SameSite=Strict".encode()),
            ]})
            await send({"type": "http.response.body", "body": b""})
            return
        if not self._carries_token(headers):
            await _plain(send, 403, "This dashboard needs its token: open the link "
                         "`durable ui` printed (http://HOST:PORT/?token=...).")
            return
        await self.app(scope, receive, send)

    def _carries_token(self, headers: dict[str, str]) -> bool:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie and hmac.compare_digest(value.encode(), self.token.encode()):
                return True
        bearer = headers.get("authorization", "")
        return bearer.startswith("Bearer ") and hmac.compare_digest(
            bearer[7:].strip().encode(), self.token.encode())


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return sending


def same_origin(origin: str | None, host: str | None) -> bool:
    """True when the browser sent no Origin, or one naming this server's host."""
    if origin is None:
        return True
    return host is not None and origin in (f"http://{host}", f"https://{host}")


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": text.encode()})
