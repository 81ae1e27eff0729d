"""A loopback HTTP proxy that injects faults in front of a real registry.

Usage::

    with FaultProxy(open_registry.url) as proxy:
        proxy.add_fault("GET", r"/blobs/sha256:", cut_response_after=1000)
        client = RegistryClient.connect(proxy.url)
        ...
        assert any("Range" in r.headers for r in proxy.requests)

Requests are forwarded to the upstream with their ``Host`` header untouched, so
the registry builds ``Location`` and ``Link`` URLs that point back at the proxy.
A fault matches by method (``None`` = any) and a regular expression searched in
the path plus query; it lets the first ``skip`` matching requests through, then
fires ``times`` times (``None`` = forever); when several are due, the earliest
added fires and the others wait for the next match. Exactly one action per fault:

- ``status=503, headers={"Retry-After": "1"}, body=b""``: answer without forwarding;
- ``cut_response_after=N``: forward, send the headers and N body bytes, then close;
- ``cut_request_after=N``: read N bytes of the request body, then reset both
  connections; ``forward_partial=True`` first streams those N bytes upstream
  (the registry sees a truncated body), otherwise the upstream sees nothing;
  ``keep_partial=True`` (an upload PATCH) plays a registry that keeps what a cut
  PATCH delivered: those N bytes go upstream as a whole PATCH (Content-Length and
  Content-Range say N bytes), and later requests to the old upload location go to
  the one its answer named (distribution's state token moved on);
- ``corrupt_at=i``: forward, with body byte ``i`` (negative: from the end) flipped;
- ``stall=seconds`` (with ``stall_after=N`` body bytes, default: before headers):
  forward, then go silent for that long and close;
- ``redirect_to="http://host:port"``: answer 307 to the same path on that origin;
- ``reset=True``: forward the whole exchange (the registry acts on it), then reset
  the client connection before any response header;
- ``corrupt_request_at=i``: forward, with request body byte ``i`` (negative: from the
  end; needs a Content-Length) flipped on its way to the registry.

``rst=True`` with ``cut_response_after`` or ``stall_after`` ends with a reset (RST)
instead of a clean close (FIN): the client sees "connection reset" mid-body rather
than a short body.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "Fault", "ProxyRequest"]

_HOP_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade",
})
_ACTIONS = ("status", "cut_response_after", "cut_request_after", "corrupt_at", "stall",
            "redirect_to", "reset", "corrupt_request_at")
_PIECE = 64 * 1024


@dataclass
class Fault:
    """One planned fault; ``hits`` counts how often it fired."""

    method: str | None
    path: re.Pattern[str]
    times: int | None
    action: str
    value: Any
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    forward_partial: bool = False
    keep_partial: bool = False
    stall_after: int | None = None
    rst: bool = False
    skip: int = 0
    hits: int = 0
    seen: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path.search(target) is not None


@dataclass
class ProxyRequest:
    """What the proxy saw: one request, the status it answered and the fault applied."""

    method: str
    path: str
    headers: dict[str, str]
    status: int | None = None
    fault: str | None = None
    request_bytes: int = 0  # body bytes the proxy read from the client

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        lower = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lower), None)


class _Cut(Exception):
    """Abort the exchange: reset the client connection."""


class FaultProxy:
    """Threaded loopback proxy to ``upstream`` (``http://host:port`` or ``host:port``)."""

    def __init__(self, upstream: str, *, timeout: float = 30.0) -> None:
        if "://" not in upstream:
            upstream = "http://" + upstream
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.timeout = timeout
        self.requests: list[ProxyRequest] = []
        self._faults: list[Fault] = []
        self._moved: dict[str, str] = {}  # old upload path+query -> the registry's new one
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FaultProxy:
        """Listen on a free loopback port and serve in a background thread."""
        handler = type("_BoundHandler", (_Handler,), {"proxy": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="faultproxy",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled exchanges wake up and close."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, as a registry name."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}"

    # -- faults

    def add_fault(
        self,
        method: str | None,
        path: str,
        *,
        times: int | None = 1,
        skip: int = 0,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        cut_response_after: int | None = None,
        cut_request_after: int | None = None,
        forward_partial: bool = False,
        keep_partial: bool = False,
        corrupt_at: int | None = None,
        stall: float | None = None,
        stall_after: int | None = None,
        redirect_to: str | None = None,
        reset: bool | None = None,
        corrupt_request_at: int | None = None,
        rst: bool = False,
    ) -> Fault:
        """Plan a fault for requests whose path+query matches ``path`` (``re.search``)."""
        given = {
            "status": status, "cut_response_after": cut_response_after,
            "cut_request_after": cut_request_after, "corrupt_at": corrupt_at,
            "stall": stall, "redirect_to": redirect_to, "reset": reset or None,
            "corrupt_request_at": corrupt_request_at,
        }
        chosen = [name for name in _ACTIONS if given[name] is not None]
        if len(chosen) != 1:
            raise ValueError(f"give exactly one of {', '.join(_ACTIONS)} (got {chosen})")
        fault = Fault(method=method.upper() if method else None, path=re.compile(path),
                      times=times, action=chosen[0], value=given[chosen[0]],
                      headers=dict(headers or {}), body=body,
                      forward_partial=forward_partial, keep_partial=keep_partial,
                      stall_after=stall_after, rst=rst,
                      skip=skip)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget every fault and the request log."""
        with self._lock:
            self._faults.clear()
            self.requests.clear()

    def matching(self, method: str | None = None, path: str = "") -> list[ProxyRequest]:
        """Logged requests with this method whose path+query matches ``path``."""
        pattern = re.compile(path)
        with self._lock:
            log = list(self.requests)
        return [r for r in log if (method is None or r.method == method.upper())
                and pattern.search(r.path)]

    def _take(self, method: str, target: str) -> Fault | None:
        with self._lock:
            chosen = None
            for fault in self._faults:
                if fault.matches(method, target):
                    fault.seen += 1
                    if chosen is None and fault.seen > fault.skip:
                        chosen = fault
            if chosen is not None:
                chosen.hits += 1
            return chosen

    def _target(self, path: str) -> str:
        with self._lock:
            return self._moved.get(path, path)

    def _move(self, old: str, new: str) -> None:
        with self._lock:
            self._moved[old] = new

    def _log(self, entry: ProxyRequest) -> None:
        with self._lock:
            self.requests.append(entry)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: FaultProxy  # set on the bound subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._exchange()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    # -- one request

    def _exchange(self) -> None:
        method = self.command
        entry = ProxyRequest(method, self.path, dict(self.headers.items()))
        self.proxy._log(entry)
        fault = self.proxy._take(method, self.path)
        entry.fault = fault.action if fault else None
        try:
            if fault is not None and fault.action == "status":
                self._drain(entry)
                self._answer(entry, int(fault.value), fault.headers, fault.body)
            elif fault is not None and fault.action == "redirect_to":
                self._drain(entry)
                location = str(fault.value).rstrip("/") + self.path
                self._answer(entry, 307, {"Location": location, **fault.headers}, b"")
            else:
                self._forward(entry, fault)
        except _Cut:
            self._reset()
        except OSError:
            self.close_connection = True

    def _request_body(self, entry: ProxyRequest) -> Iterator[bytes]:
        """The request body in pieces, de-chunked; counts bytes into ``entry``."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise _Cut
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537).strip():
                        pass  # trailers
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, _PIECE))
                    if not piece:
                        raise _Cut
                    left -= len(piece)
                    entry.request_bytes += len(piece)
                    yield piece
                self.rfile.readline(3)
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                piece = self.rfile.read(min(left, _PIECE))
                if not piece:
                    raise _Cut
                left -= len(piece)
                entry.request_bytes += len(piece)
                yield piece

    def _drain(self, entry: ProxyRequest) -> None:
        for _ in self._request_body(entry):
            pass

    def _answer(self, entry: ProxyRequest, status: int, headers: dict[str, str],
                body: bytes) -> None:
        entry.status = status
        self.send_response(status)
        names = {k.lower() for k in headers}
        for key, value in headers.items():
            self.send_header(key, value)
        if "content-length" not in names and "transfer-encoding" not in names:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close the client connection abruptly (RST), dropping anything unsent."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass

    def _forward(self, entry: ProxyRequest, fault: Fault | None) -> None:
        proxy = self.proxy
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                              timeout=proxy.timeout)
        try:
            try:
                self._send_upstream(upstream, entry, fault)
                response = upstream.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                self._answer(entry, 502, {"Content-Type": "text/plain"},
                             f"fault proxy: upstream failed: {exc}".encode())
                return
            self._relay(entry, response, fault)
        finally:
            upstream.close()

    def _send_upstream(self, upstream: http.client.HTTPConnection, entry: ProxyRequest,
                       fault: Fault | None) -> None:
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        has_body = chunked or "Content-Length" in self.headers
        cut = int(fault.value) if fault is not None and fault.action == "cut_request_after" \
            else None
        pieces = self._request_body(entry)
        if cut is not None and fault.keep_partial:  # type: ignore[union-attr]
            self._deliver_partial(pieces, cut)
        if cut is not None and not fault.forward_partial:  # type: ignore[union-attr]
            got = 0
            for piece in pieces:
                got += len(piece)
                if got >= cut:
                    break
            raise _Cut
        upstream.putrequest(self.command, self.proxy._target(self.path), skip_host=True,
                            skip_accept_encoding=True)
        for key, value in self.headers.items():
            if key.lower() not in _HOP_HEADERS:
                upstream.putheader(key, value)
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        upstream.endheaders()
        if not has_body:
            return
        flip: int | None = None
        if fault is not None and fault.action == "corrupt_request_at":
            flip = int(fault.value)
            if flip < 0:
                flip += int(self.headers.get("Content-Length") or 0)
        sent = 0
        for piece in pieces:
            if flip is not None and sent <= flip < sent + len(piece):
                mutable = bytearray(piece)
                mutable[flip - sent] ^= 0xFF
                piece = bytes(mutable)
            if cut is not None and sent + len(piece) >= cut:
                piece = piece[: cut - sent]
                self._write_upstream(upstream, piece, chunked)
                upstream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                         struct.pack("ii", 1, 0))
                raise _Cut
            self._write_upstream(upstream, piece, chunked)
            sent += len(piece)
        if cut is not None:
            raise _Cut
        if chunked:
            upstream.send(b"0\r\n\r\n")

    def _deliver_partial(self, pieces: Iterator[bytes], cut: int) -> None:
        """Send the first ``cut`` body bytes upstream as a whole PATCH, note where the
        upload moved, then reset the client (see ``keep_partial``)."""
        got = bytearray()
        for piece in pieces:
            got += piece
            if len(got) >= cut:
                break
        body = bytes(got[:cut])
        start = int((self.headers.get("Content-Range") or "0-").split("-", 1)[0] or 0)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in _HOP_HEADERS | {"content-length", "content-range"}}
        headers["Content-Range"] = f"{start}-{start + len(body) - 1}"
        upstream = http.client.HTTPConnection(self.proxy.upstream_host,
                                              self.proxy.upstream_port,
                                              timeout=self.proxy.timeout)
        try:
            upstream.putrequest(self.command, self.proxy._target(self.path), skip_host=True,
                                skip_accept_encoding=True)
            for key, value in headers.items():
                upstream.putheader(key, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            response.read()
            location = response.getheader("Location")
            if response.status < 300 and location:
                moved = urlsplit(location)
                self.proxy._move(self.path, moved.path + (f"?{moved.query}" if moved.query
                                                          else ""))
        finally:
            upstream.close()
        raise _Cut

    @staticmethod
    def _write_upstream(upstream: http.client.HTTPConnection, piece: bytes,
                        chunked: bool) -> None:
        if not piece:
            return
        if chunked:
            upstream.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        else:
            upstream.send(piece)

    def _relay(self, entry: ProxyRequest, response: http.client.HTTPResponse,
               fault: Fault | None) -> None:
        entry.status = response.status
        action = fault.action if fault is not None else None
        length_header = response.getheader("Content-Length")
        body_expected = self.command != "HEAD" and response.status not in (204, 304)
        buffered: bytes | None = None
        if body_expected and length_header is None:
            buffered = response.read()  # chunked or close-delimited: small JSON answers
            length = len(buffered)
        else:
            length = int(length_header or 0) if body_expected else 0

        if action == "reset":
            if buffered is None and body_expected:
                response.read()  # let the registry finish what it does
            raise _Cut

        if action == "stall" and fault.stall_after is None:  # type: ignore[union-attr]
            self.proxy._stopping.wait(float(fault.value))  # type: ignore[union-attr]
            raise _Cut

        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_HEADERS | {"content-length", "date", "server"}:
                self.send_header(key, value)
        if body_expected or length_header is not None:
            self.send_header("Content-Length", str(length if body_expected else length_header))
        self.end_headers()
        if not body_expected:
            self.wfile.flush()
            return

        limit: int | None = None
        if action == "cut_response_after":
            limit = int(fault.value)  # type: ignore[union-attr]
        elif action == "stall":
            limit = int(fault.stall_after)  # type: ignore[union-attr, arg-type]
        flip: int | None = None
        if action == "corrupt_at":
            flip = int(fault.value)  # type: ignore[union-attr]
            flip = flip + length if flip < 0 else flip

        position = 0

        def pieces() -> Iterator[bytes]:
            if buffered is not None:
                yield buffered
                return
            while True:
                piece = response.read(_PIECE)
                if not piece:
                    return
                yield piece

        for piece in pieces():
            if flip is not None and position <= flip < position + len(piece):
                mutable = bytearray(piece)
                mutable[flip - position] ^= 0xFF
                piece = bytes(mutable)
            if limit is not None and position + len(piece) >= limit:
                self.wfile.write(piece[: limit - position])
                self.wfile.flush()
                if action == "stall":
                    self.proxy._stopping.wait(float(fault.value))  # type: ignore[union-attr]
                if fault.rst:  # type: ignore[union-attr]
                    raise _Cut  # RST: "connection reset by peer" mid-body
                self.close_connection = True  # FIN: the client sees a short body
                return
            self.wfile.write(piece)
            position += len(piece)
        self.wfile.flush()
