"""One bounded `POST`: the whole exchange, not each socket call, ends within `timeout`.

`urllib` bounds each blocking call, so a collector that trickles its answer a byte at a time
could hold a request for ever; here every send and receive gets what is left of one deadline.
HTTP/1.1 with `Connection: close`; https through the standard `ssl` module.

`send` is the same request without reading the answer, to a resolved address: a task process
ending uses it from its own thread (no DNS lookup, which has no timeout, and no hand-off to
another thread that a busy host may not schedule in time).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024  # the collector answers with a small JSON object


class TransportError(OSError):
    """The exchange failed or ran out of time; the message is safe to log."""


@dataclass(frozen=True)
class Response:
    status: int
    retry_after: float | None = None
    body: bytes = b""


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError("timed out")
    return left


def _request(url: str, body: bytes, token: str | None) -> tuple[str, int, bool, bytes]:
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc = host if ":" not in host else f"[{host}]"
    if parts.port:
        netloc += f":{parts.port}"
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "User-Agent: impactwatch-listener/1",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return host, port, secure, ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(status_line.split(" ", 2)[1])
    except (IndexError, ValueError):
        raise TransportError(f"not an HTTP response: {status_line[:60]!r}") from None
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None  # an HTTP date: rare, and the back-off applies anyway


Address = tuple[int, tuple]  # (address family, socket address), from `resolve`


def resolve(url: str) -> Address:
    """The collector's address (blocking DNS lookup: call it where waiting is harmless)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    family, _, _, _, sockaddr = socket.getaddrinfo(parts.hostname, port, 0, socket.SOCK_STREAM)[0]
    return family, sockaddr


def _connect(
    host: str, port: int, secure: bool, deadline: float, address: Address | None
) -> socket.socket:
    try:
        if address is None:
            sock = socket.create_connection((host, port), timeout=_left(deadline))
        else:
            sock = socket.socket(address[0], socket.SOCK_STREAM)
            try:
                sock.settimeout(_left(deadline))
                sock.connect(address[1])
            except BaseException:
                sock.close()
                raise
    except TransportError:
        raise
    except TimeoutError:
        raise TransportError("cannot connect: timed out") from None
    except OSError as exc:
        raise TransportError(f"cannot connect: {exc.strerror or type(exc).__name__}") from None
    if secure:
        try:
            sock.settimeout(_left(deadline))
            return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (OSError, TransportError) as exc:
            sock.close()
            raise TransportError(f"TLS: {exc}") from None
    return sock


def send(url: str, address: Address, body: bytes, token: str | None, timeout: float) -> None:
    """Hand the request to the kernel and close; the answer is not read (nor awaited)."""
    deadline = time.monotonic() + timeout
    host, port, secure, request = _request(url, body, token)
    sock = _connect(host, port, secure, deadline, address)
    try:
        sock.settimeout(_left(deadline))
        sock.sendall(request)
    except TransportError:
        raise
    except OSError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    finally:
        sock.close()  # the kernel still delivers what was sent


def post(
    url: str,
    body: bytes,
    token: str | None,
    timeout: float,
    track: Callable[[socket.socket | None, bool], None] | None = None,
) -> Response:
    """Send `body`; the status, Retry-After and (at most 64 KiB of) the answer's body.

    `track(sock, sent)` is told of the connection once made, again once the request is with
    the kernel (`sent`), and `(None, False)` once closed, so another thread can `abort` it.
    """
    deadline = time.monotonic() + timeout
    host, port, secure, request = _request(url, body, token)
    sock = _connect(host, port, secure, deadline, None)
    if track is not None:
        track(sock, False)
    try:
        sock.settimeout(_left(deadline))
        sock.sendall(request)
        if track is not None:
            track(sock, True)
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > _MAX_HEAD:
                raise TransportError("response head too large")
            sock.settimeout(_left(deadline))
            chunk = sock.recv(16384)
            if not chunk:
                raise TransportError("connection closed before a response")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = _parse_head(head)
        try:
            wanted = min(int(headers.get("content-length", "0")), _MAX_BODY)
        except ValueError:
            wanted = 0
        while len(rest) < wanted:
            sock.settimeout(_left(deadline))
            chunk = sock.recv(16384)
            if not chunk:
                raise TransportError("connection closed mid-response")
            rest += chunk
        return Response(status, _retry_after(headers.get("retry-after")), rest[:wanted])
    except TransportError:
        raise
    except TimeoutError:
        raise TransportError("timed out") from None
    except OSError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc.strerror or exc}") from None
    finally:
        if track is not None:
            track(None, False)
        sock.close()


def abort(sock: socket.socket) -> None:
    """End an exchange from another thread: its blocked send or receive returns at once."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
