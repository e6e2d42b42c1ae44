"""What keeps the play server to its own page and within bounds: origin and token checks, a bounded
pool of workers for renders and uploads, and request bodies read against a deadline.

A web page the user visits elsewhere can send requests to 127.0.0.1 too. Every POST must therefore
come from the page itself: an ``Origin`` header (browsers send one with every cross-origin POST), when
present, must name this server, and the ``X-Knobcap-Token`` header must carry the random token that was
written into the page this server served (another site cannot read it). ``--live`` moves the sound
card's knobs only through such a POST.
"""

from __future__ import annotations

import hmac
import secrets
import socket
import threading
import time
from typing import BinaryIO

TOKEN_HEADER = "X-Knobcap-Token"
TOKEN_PLACEHOLDER = "__KNOBCAP_TOKEN__"
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class RefusedError(Exception):
    """A request is refused: ``status`` and a one-line ``message`` for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def new_token() -> str:
    """A random token for one run of the server (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def split_host(value: str) -> tuple[str, str]:
    """``(host, port)`` of a Host header value or an origin's netloc (``port`` is '' when absent)."""
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8808
        host, _, rest = value[1:].partition("]")
        return host, rest.lstrip(":")
    host, _, port = value.partition(":")
    return host, port


def host_ok(host_header: str | None) -> bool:
    """The Host header names the loopback interface (no DNS rebinding)."""
    return split_host(host_header or "")[0] in LOOPBACK_NAMES


def check_post(headers: dict[str, str] | object, token: str, port: int) -> None:
    """Raise :class:`RefusedError` (403) unless a POST comes from this server's own page."""
    get = headers.get  # type: ignore[attr-defined]
    origin = get("Origin")
    if origin is not None:
        scheme, _, netloc = origin.partition("://")
        host, origin_port = split_host(netloc)
        if scheme != "http" or host not in LOOPBACK_NAMES or origin_port != str(port):
            raise RefusedError(403, f"refused a request from another site ({origin[:80]}); knobcap play "
                               "answers only its own page.")
    if (get("Sec-Fetch-Site") or "same-origin") not in {"same-origin", "none"}:
        raise RefusedError(403, "refused a request from another site; knobcap play answers only its own "
                                "page.")
    given = get(TOKEN_HEADER) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise RefusedError(403, "this request lacks the page's session token; reload the page knobcap play "
                           "printed (the token changes each time play starts).")


class WorkPool:
    """At most ``workers`` renders or uploads at once and ``queue`` more waiting; beyond that, 503."""

    def __init__(self, workers: int = 2, queue: int = 8) -> None:
        self.workers, self.queue = workers, queue
        self._admitted = threading.BoundedSemaphore(workers + queue)
        self._running = threading.BoundedSemaphore(workers)

    def __enter__(self) -> WorkPool:
        if not self._admitted.acquire(blocking=False):
            raise RefusedError(503, f"knobcap play is busy ({self.workers} jobs running, {self.queue} "
                               "waiting); try again in a moment.")
        self._running.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.release()
        self._admitted.release()


def read_body(rfile: BinaryIO, connection: socket.socket, length: int, seconds: float) -> bytes:
    """``length`` bytes of a request body, all within ``seconds``; a stalled or short body raises
    :class:`RefusedError` (408) and the caller drops the connection."""
    deadline = time.monotonic() + seconds
    parts: list[bytes] = []
    remaining = length
    previous = connection.gettimeout()
    try:
        while remaining > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            connection.settimeout(left)
            chunk = rfile.read1(min(remaining, 1 << 16))  # type: ignore[attr-defined]
            if not chunk:
                raise RefusedError(400, f"the request body ended after {length - remaining} of {length} "
                                        "bytes; send it again.")
            parts.append(chunk)
            remaining -= len(chunk)
    except TimeoutError:
        raise RefusedError(408, f"the request body did not arrive within {seconds:g} s "
                           f"({length - remaining} of {length} bytes); send it again.") from None
    finally:
        connection.settimeout(previous)
    return b"".join(parts)
