"""A loopback proxy that gives a real distribution registry the OCI 1.1 referrers API.

CNCF distribution has no referrers API in any version, and no registry that has one
runs here, so this proxy plays that part, the way the distribution spec says
(``spec.md``, "Listing Referrers" and "Pushing Manifests with Subject"):

- every request is forwarded to the real registry, ``Host`` untouched;
- a manifest PUT whose body has a ``subject`` is remembered once the registry stored
  it (201), and the answer gains ``OCI-Subject: <subject digest>``;
- ``GET /v2/<name>/referrers/<digest>`` answers an image index of descriptors with
  ``artifactType`` (the manifest's, else its config media type) and annotations, for
  subjects that exist or not; ``?artifactType=`` filters and sets
  ``OCI-Filters-Applied: artifactType``; more than ``page_size`` entries are paged
  with ``Link: <…>; rel="next"``;
- a manifest DELETE by digest forgets it.

Written independently of registry_nb (its own hashing and descriptor code), so tests
do not check the library against itself.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["ReferrersProxy"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-connection"}
_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"


class ReferrersProxy:
    """``with ReferrersProxy(registry.url) as proxy: RegistryClient.connect(proxy.url)``."""

    def __init__(self, upstream: str, *, page_size: int = 2) -> None:
        parts = urlsplit(upstream if "//" in upstream else f"http://{upstream}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.page_size = page_size
        #: (repository, subject digest) -> {child digest: descriptor dict}, in push order
        self.referrers: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.referrer_requests: list[str] = []
        handler = type("Handler", (_Handler,), {"proxy": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def __enter__(self) -> ReferrersProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def remember(self, name: str, body: bytes) -> str | None:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if not isinstance(subject, dict) or "digest" not in subject:
            return None
        artifact_type = doc.get("artifactType") or (
            (doc.get("config") or {}).get("mediaType") if
            (doc.get("config") or {}).get("mediaType") != EMPTY else None)
        entry = {"mediaType": doc.get("mediaType"),
                 "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body)}
        if artifact_type:
            entry["artifactType"] = artifact_type
        if doc.get("annotations"):
            entry["annotations"] = doc["annotations"]
        with self.lock:
            self.referrers.setdefault((name, subject["digest"]), {})[entry["digest"]] = entry
        return subject["digest"]

    def forget(self, name: str, digest: str) -> None:
        with self.lock:
            for (repo, _), children in self.referrers.items():
                if repo == name:
                    children.pop(digest, None)

    def listing(self, name: str, subject: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.referrers.get((name, subject), {}).values())


class _Handler(BaseHTTPRequestHandler):
    proxy: ReferrersProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        match = _REFERRERS.match(parts.path)
        if match:
            self._referrers(match["name"], match["digest"], parse_qs(parts.query))
        else:
            self._forward()

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _referrers(self, name: str, digest: str, query: dict[str, list[str]]) -> None:
        self.proxy.referrer_requests.append(self.path)
        self._drain()
        entries = self.proxy.listing(name, digest)
        headers = {"Content-Type": OCI_INDEX}
        wanted = query.get("artifactType", [None])[0]
        if wanted:
            entries = [e for e in entries if e.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        last = query.get("last", [None])[0]
        if last:
            digests = [e["digest"] for e in entries]
            entries = entries[digests.index(last) + 1:] if last in digests else []
        page = entries[:self.proxy.page_size]
        if len(entries) > len(page):
            link = f"/v2/{name}/referrers/{digest}?last={page[-1]['digest']}"
            if wanted:
                link += f"&artifactType={wanted}"
            headers["Link"] = f'<{link}>; rel="next"'
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                           "manifests": page}).encode()
        self._send(200, headers, body)

    def _drain(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        body = self._drain()
        upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        upstream.request(self.command, self.path, body=body or None, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        out = {k: v for k, v in response.getheaders()
               if k.lower() not in _HOP and k.lower() != "content-length"}
        match = _MANIFEST.match(urlsplit(self.path).path)
        if match and self.command == "PUT" and response.status == 201:
            subject = self.proxy.remember(match["name"], body)
            if subject:
                out["OCI-Subject"] = subject
        elif match and self.command == "DELETE" and response.status == 202:
            self.proxy.forget(match["name"], match["ref"])
        self.send_response(response.status)
        for key, value in out.items():
            self.send_header(key, value)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
