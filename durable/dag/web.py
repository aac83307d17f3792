"""HTTP for DAG tasks: one request with a total deadline, a size cap, safe redirects, and
secrets kept out of anything recorded or logged.

- Only ``http`` and ``https`` URLs are fetched (no ``file:``, ``ftp:`` or ``data:``, also
  not through a redirect).
- ``timeout`` bounds the whole request: connecting, every redirect and reading the body
  together (a watchdog shuts the socket down at the deadline; name resolution is the
  one part it cannot interrupt).
- A redirect to another origin (scheme, host or port) drops ``Authorization`` and
  ``Cookie``; credentials in the URL (``https://user:pass@host``) are sent as Basic auth,
  so they are dropped the same way.
- URLs in error messages and logs have their credentials and secret-looking query values
  (:data:`SECRET_NAME`) replaced by ``***``; the values of the request's secrets are
  scrubbed from error text too, and a recorded response shows ``Set-Cookie`` as ``***``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from durable.errors import HttpRequestFailed, InvalidArgument

log = logging.getLogger("durable.dag")

#: The largest response body an HTTP task accepts by default (``max_bytes=``).
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
SCHEMES = ("http", "https")
MASK = "***"
#: Query parameter names whose values are secrets (case-insensitive, anywhere in the name).
SECRET_NAME = re.compile(
    r"token|secret|passw|pwd|signature|credential|auth|session|cookie|private|"
    r"(^|[^a-z])(api|access|client)?[-_]?key($|[^a-z])|(^|[^a-z])sig($|[^a-z])",
    re.IGNORECASE,
)
#: Request headers that carry credentials (dropped on a cross-origin redirect, never shown).
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
_ERROR_BODY_BYTES = 64 * 1024


def check_url(url: str, task: str | None = None) -> None:
    """Refuse a URL that is not ``http``/``https`` (``InvalidArgument``)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        where = f"http task {task!r}: " if task else ""
        raise InvalidArgument(
            f"{where}URL {redact_url(url)!r} has scheme {scheme or 'none'!r}; HTTP tasks fetch "
            "only http:// and https:// URLs (read a local file with tasks.read_file)"
        )


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo and secret-looking query values become ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_NAME.search(name) for name, _ in pairs):
            query = urlencode([(name, MASK if SECRET_NAME.search(name) else value)
                               for name, value in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the values of credential headers replaced by ``***``."""
    return {name: MASK if name.lower() in (*CREDENTIAL_HEADERS, "set-cookie") else value
            for name, value in headers.items()}


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted and every value of ``secrets`` masked."""
    text = _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # shorter values would mask ordinary words
            text = text.replace(secret, MASK)
    return text


def _secrets(url: str, headers: Mapping[str, str]) -> list[str]:
    """The secret values of a request, to scrub from error text."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() in CREDENTIAL_HEADERS:
            found.append(value)
            found.append(value.partition(" ")[2])  # the token of "Bearer <token>"
            found.extend(part.partition("=")[2].strip() for part in value.split(";"))
    parts = urlsplit(url)
    if parts.password:
        found.extend((parts.password, unquote(parts.password)))
    found.extend(value for name, value in parse_qsl(parts.query, keep_blank_values=True)
                 if SECRET_NAME.search(name))
    return [value for value in found if value]


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https"
                                                                  else 80)


class _Deadline:
    """Shuts the request's sockets down when its total time is up."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("total timeout reached")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv; close() would not

    def cancel(self) -> None:
        self._timer.cancel()


def _opener(deadline: _Deadline, task: str | None) -> urllib.request.OpenerDirector:
    """An opener for http/https only, whose connections obey ``deadline``."""

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.timeout = deadline.remaining()
            super().connect()
            deadline.watch(self.sock)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self) -> None:
            self.timeout = deadline.remaining()
            super().connect()
            deadline.watch(self.sock)

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Connection, req)

    class Secure(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(SecureConnection, req, context=ssl.create_default_context())

    class Redirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                             headers: Any, newurl: str) -> urllib.request.Request | None:
            check_url(newurl, task)
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None and _origin(newurl) != _origin(req.full_url):
                for name in CREDENTIAL_HEADERS:
                    new.remove_header(name.capitalize())
                log.debug("http task %s: redirect to another origin %s; credentials dropped",
                          task, redact_url(newurl))
            return new

    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), Plain(), Secure(),
                    urllib.request.HTTPDefaultErrorHandler(), Redirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def http_request(url: str, *, method: str = "GET", headers: Mapping[str, str] | None = None,
                 data: bytes | None = None, timeout: float = 30.0,
                 max_bytes: int = MAX_RESPONSE_BYTES, task: str | None = None) -> dict[str, Any]:
    """Make one request; ``{"status", "headers", "text", "json"}``, or raise
    ``HttpRequestFailed`` (an error status, no response, past ``timeout`` seconds in total,
    or a body over ``max_bytes``). See the module docstring for what is kept secret."""
    method = method.upper()
    check_url(url, task)
    if not timeout > 0:
        raise InvalidArgument(f"http task {task!r}: timeout must be > 0, not {timeout!r}")
    sent = dict(headers or {})
    secrets = _secrets(url, sent)
    shown = redact_url(url)
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        sent.setdefault("Authorization", f"Basic {token}")
        secrets.append(token)
        url = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path,
                          parts.query, parts.fragment))

    def failed(status: int | None, reason: str, body: str = "") -> HttpRequestFailed:
        error = HttpRequestFailed(method, shown, status, redact_text(reason, secrets),
                                  redact_text(body, secrets))
        log.info("http task %s: %s", task, error)
        return error

    log.debug("http task %s: %s %s", task, method, shown)
    deadline = _Deadline(timeout)
    request = urllib.request.Request(url, data=data, headers=sent, method=method)
    try:
        with _opener(deadline, task).open(request, timeout=timeout) as response:
            status, response_headers = response.status, dict(response.headers.items())
            length = response_headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise failed(status, _too_big(length, max_bytes))
            raw = _read(response, deadline, max_bytes)
            if raw is None:
                raise failed(status, _too_big("more", max_bytes))
    except urllib.error.HTTPError as error:
        body = b""
        if error.fp is not None:
            with contextlib.suppress(OSError):  # the body is only a hint for the message
                body = error.read(min(max_bytes, _ERROR_BODY_BYTES))
        if deadline.expired:
            raise failed(None, _late(timeout)) from None
        raise failed(error.code, str(error.reason), body.decode(errors="replace")) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        if deadline.expired:
            raise failed(None, _late(timeout)) from None
        raise failed(None, str(getattr(error, "reason", error))) from None
    finally:
        deadline.cancel()
    if deadline.expired:
        raise failed(None, _late(timeout))
    text = raw.decode(errors="replace")
    parsed = None
    if "json" in response_headers.get("Content-Type", "").lower():
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    return {"status": status, "headers": redact_headers(response_headers), "text": text,
            "json": parsed}


def _read(response: http.client.HTTPResponse, deadline: _Deadline, max_bytes: int
          ) -> bytes | None:
    """The body, or None once it is over ``max_bytes`` (read no further)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(64 * 1024)
        if deadline.expired:  # a shut-down socket reads as EOF: not a complete body
            raise TimeoutError("total timeout reached")
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)


def _too_big(size: str, max_bytes: int) -> str:
    return (f"OK, but its body ({size} bytes) is over max_bytes={max_bytes}; raise "
            "max_bytes= on the task or ask the service for less")


def _late(timeout: float) -> str:
    return (f"past the total timeout of {timeout:g} s (connecting, redirects and reading "
            "together); raise timeout= or make the service faster")
