"""A client for the OCI distribution HTTP API (``/v2/``).

:class:`RegistryClient` speaks the API of one registry through a
:class:`~registry_nb.transport.Transport` (which owns the session, the auth flow
and the retries). Every byte it hands back is verified: manifests fetched by
digest and every blob are hashed while they stream and refused on a mismatch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlencode

import requests

from .errors import (
    DigestMismatchError,
    InvalidManifestError,
    RegistryHTTPError,
    RegistryUnavailableError,
)
from .manifest import MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, Index, Manifest, parse_manifest
from .reference import parse_digest, sha256_digest
from .transport import Transport, raise_for_status

__all__ = ["RegistryClient", "ManifestHead", "BlobProgress"]

log = logging.getLogger(__name__)

#: Read size for blob downloads: large enough that Python's per-chunk overhead
#: vanishes next to hashing (8 KiB chunks run at under half the speed).
READ_CHUNK = 1024 * 1024
#: Blobs up to this size are uploaded in one PUT; larger ones in PATCH chunks.
MONOLITHIC_LIMIT = 16 * 1024 * 1024
#: Size of one PATCH chunk for large uploads (raised to OCI-Chunk-Min-Length).
UPLOAD_CHUNK = 32 * 1024 * 1024
#: Page size ceiling: distribution answers 400 when ``n`` is over 1000.
MAX_PAGE_SIZE = 1000
#: Times a dropped blob download or chunked upload is resumed before giving up.
RESUME_ATTEMPTS = 3

#: Receives (bytes done, bytes total or None) while a blob moves.
BlobProgress = Callable[[int, "int | None"], None]

_DROPPED = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


@dataclass(frozen=True)
class ManifestHead:
    """What a manifest HEAD tells without the body."""

    digest: str | None
    media_type: str | None
    size: int | None


def _repo_scope(repository: str, actions: str = "pull") -> str:
    return f"repository:{repository}:{actions}"


def _hasher(digest: str) -> Any:
    algorithm, _ = parse_digest(digest)
    try:
        return hashlib.new(algorithm)
    except ValueError as exc:  # pragma: no cover - parse_digest limits algorithms
        raise DigestMismatchError(
            "unsupported digest algorithm", expected=digest, actual=algorithm
        ) from exc


class RegistryClient:
    """Calls of the distribution API on one registry.

    ``RegistryClient.connect("127.0.0.1:5000")`` builds the transport; pass a
    ready :class:`Transport` to share one session between clients.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    @classmethod
    def connect(
        cls, registry: str, credentials: Any = None, **transport_options: Any
    ) -> RegistryClient:
        """Create a client (and its transport) for ``registry`` (``host[:port]`` or URL)."""
        return cls(Transport(registry, credentials, **transport_options))

    @property
    def host(self) -> str:
        """The registry host as users name it (``docker.io`` for Docker Hub)."""
        return self.transport.host

    def close(self) -> None:
        """Release the connection pool."""
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.transport.base_url!r})"

    # ------------------------------------------------------------------ base

    def ping(self) -> dict[str, Any]:
        """Call ``GET /v2/`` and report the API version and whether auth was needed.

        Returns ``{"url", "status", "api_version", "auth_scheme"}``; raises
        :class:`AuthenticationError` when the registry refuses the credentials.
        """
        response = self.transport.request("GET", "/v2/")
        raise_for_status(response, "ping the registry API (/v2/)")
        response.close()
        return {
            "url": self.transport.base_url + "/v2/",
            "status": response.status_code,
            "api_version": response.headers.get("Docker-Distribution-API-Version"),
            "auth_scheme": getattr(self.transport, "auth_scheme", None),
        }

    def _pages(self, path: str, key: str, scopes: list[str], page_size: int | None,
               limit: int | None, what: str) -> Iterator[str]:
        params: dict[str, Any] | None = None
        if page_size is not None:
            params = {"n": max(1, min(int(page_size), MAX_PAGE_SIZE))}
        url: str | None = path
        yielded = 0
        while url is not None:
            response = self.transport.request("GET", url, scopes=scopes, params=params)
            raise_for_status(response, what)
            try:
                body = response.json()
            except ValueError as exc:
                raise RegistryHTTPError(
                    f"{what}: the registry answered with something that is not JSON",
                    status=response.status_code,
                ) from exc
            items = body.get(key) if isinstance(body, dict) else None
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise RegistryHTTPError(f"{what}: {key!r} in the answer is not a list of names",
                                        status=response.status_code)
            for item in items:
                if limit is not None and yielded >= limit:
                    return
                yielded += 1
                yield item
            # Follow the Link header verbatim: registries use opaque cursors.
            nxt = response.links.get("next", {}).get("url")
            url, params = (nxt, None) if nxt else (None, None)

    def catalog(self, *, page_size: int | None = None, limit: int | None = None) -> Iterator[str]:
        """Yield repository names from ``/v2/_catalog``, following every page."""
        return self._pages("/v2/_catalog", "repositories", ["registry:catalog:*"], page_size,
                           limit, "list the registry's catalog")

    def tags(self, repository: str, *, page_size: int | None = None,
             limit: int | None = None) -> list[str]:
        """Return the tags of ``repository`` (every page)."""
        return list(self._pages(f"/v2/{repository}/tags/list", "tags", [_repo_scope(repository)],
                                page_size, limit, f"list the tags of {repository}"))

    # ------------------------------------------------------------- manifests

    def get_manifest(self, repository: str, reference: str, *,
                     accept: str = MANIFEST_ACCEPT) -> Manifest | Index:
        """Fetch and parse a manifest or index by tag or digest.

        A digest reference is verified against the bytes received; a tag's digest is
        computed from them (``.digest`` of the result).
        """
        what = f"get the manifest {repository}:{reference}" if ":" not in reference else \
            f"get the manifest {repository}@{reference}"
        response = self.transport.request(
            "GET", f"/v2/{repository}/manifests/{reference}", scopes=[_repo_scope(repository)],
            headers={"Accept": accept}, stream=True,
        )
        try:
            raise_for_status(response, what)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
                raise InvalidManifestError(
                    f"{what}: the manifest is {int(declared)} bytes, over the "
                    f"{MAX_MANIFEST_BYTES}-byte limit"
                )
            raw = self._read_bounded(response, MAX_MANIFEST_BYTES, what)
        finally:
            response.close()
        if reference.startswith(("sha256:", "sha512:")) or "@" in reference:
            self._verify_bytes(raw, reference, what)
        header_digest = response.headers.get("Docker-Content-Digest")
        if header_digest and header_digest.startswith("sha256:"):
            if header_digest != sha256_digest(raw):
                raise DigestMismatchError(
                    f"{what}: the registry's Docker-Content-Digest does not match the body",
                    expected=header_digest, actual=sha256_digest(raw),
                )
        return parse_manifest(raw, response.headers.get("Content-Type"))

    @staticmethod
    def _read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
        buf = bytearray()
        try:
            for chunk in response.iter_content(64 * 1024):
                buf += chunk
                if len(buf) > limit:
                    raise InvalidManifestError(f"{what}: the body is over the {limit}-byte limit")
        except _DROPPED as exc:
            raise RegistryUnavailableError(f"{what}: the connection dropped mid-body ({exc})",
                                           hint="Try again; check the registry.") from exc
        return bytes(buf)

    @staticmethod
    def _verify_bytes(data: bytes, digest: str, what: str) -> None:
        hasher = _hasher(digest)
        hasher.update(data)
        actual = f"{parse_digest(digest)[0]}:{hasher.hexdigest()}"
        if actual != digest:
            raise DigestMismatchError(f"{what}: content does not match its digest",
                                      expected=digest, actual=actual)

    def head_manifest(self, repository: str, reference: str, *,
                      accept: str = MANIFEST_ACCEPT) -> ManifestHead | None:
        """HEAD a manifest: its digest, media type and size, or ``None`` when absent."""
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/manifests/{reference}", scopes=[_repo_scope(repository)],
            headers={"Accept": accept},
        )
        if response.status_code == 404:
            return None
        raise_for_status(response, f"check the manifest {repository}:{reference}")
        length = response.headers.get("Content-Length")
        content_type = response.headers.get("Content-Type")
        return ManifestHead(
            digest=response.headers.get("Docker-Content-Digest"),
            media_type=content_type.split(";")[0].strip() if content_type else None,
            size=int(length) if length and length.isdigit() else None,
        )

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest or index under a tag or digest; return its digest."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(
                f"the manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit"
            )
        digest = sha256_digest(raw)
        if reference.startswith("sha256:") and reference != digest:
            raise DigestMismatchError("manifest put by digest", expected=reference, actual=digest)
        response = self.transport.request(
            "PUT", f"/v2/{repository}/manifests/{reference}",
            scopes=[_repo_scope(repository, "pull,push")],
            headers={"Content-Type": media_type}, data=raw,
        )
        raise_for_status(response, f"push the manifest {repository}:{reference}")
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned.startswith("sha256:") and returned != digest:
            raise DigestMismatchError("the registry stored the manifest under another digest",
                                      expected=digest, actual=returned)
        return digest

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes)."""
        parse_digest(digest)
        response = self.transport.request(
            "DELETE", f"/v2/{repository}/manifests/{digest}",
            scopes=[_repo_scope(repository, "delete")],
        )
        raise_for_status(response, f"delete the manifest {repository}@{digest}")

    # ----------------------------------------------------------------- blobs

    def blob_size(self, repository: str, digest: str) -> int | None:
        """HEAD a blob: its size in bytes, or ``None`` when the repository lacks it."""
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scopes=[_repo_scope(repository)],
        )
        if response.status_code == 404:
            return None
        raise_for_status(response, f"check the blob {digest} in {repository}")
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else -1

    def blob_exists(self, repository: str, digest: str) -> bool:
        """True when ``repository`` holds the blob ``digest``."""
        return self.blob_size(repository, digest) is not None

    def iter_blob(self, repository: str, digest: str, *, size: int | None = None,
                  progress: BlobProgress | None = None,
                  chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """Stream a blob's bytes, resuming with ``Range`` after a dropped connection.

        The digest (and ``size`` when given) is checked when the stream ends: a
        mismatch raises :class:`DigestMismatchError` after the last chunk, so
        consumers must treat what they received as unverified until the iterator
        is exhausted without error (:meth:`fetch_blob` does this for files).
        """
        hasher = _hasher(digest)
        what = f"download the blob {digest} from {repository}"
        done = 0
        attempts = 0
        total = size
        while True:
            headers = {"Range": f"bytes={done}-"} if done else None
            response = self.transport.request(
                "GET", f"/v2/{repository}/blobs/{digest}", scopes=[_repo_scope(repository)],
                headers=headers, stream=True,
            )
            try:
                raise_for_status(response, what)
                if done and response.status_code != 206:
                    raise RegistryHTTPError(
                        f"{what}: the registry cannot resume (no Range support)",
                        status=response.status_code,
                        hint="Try again on a steadier connection.",
                    )
                if total is None and not done:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                for chunk in response.iter_content(chunk_size):
                    if not chunk:
                        continue
                    done += len(chunk)
                    if size is not None and done > size:
                        raise DigestMismatchError(f"{what}: more bytes than the descriptor says",
                                                  expected=f"{size} bytes", actual=f">{size} bytes")
                    hasher.update(chunk)
                    if progress is not None:
                        progress(done, total)
                    yield chunk
                break
            except _DROPPED as exc:
                attempts += 1
                if attempts > RESUME_ATTEMPTS:
                    raise RegistryUnavailableError(
                        f"{what}: the connection dropped {attempts} times ({exc})",
                        hint="Check the registry and the network, then try again.",
                    ) from exc
                log.info("blob download of %s dropped at %d bytes; resuming", digest, done)
            finally:
                response.close()
        actual = f"{parse_digest(digest)[0]}:{hasher.hexdigest()}"
        if size is not None and done != size:
            raise DigestMismatchError(f"{what}: wrong length", expected=f"{size} bytes",
                                      actual=f"{done} bytes")
        if actual != digest:
            raise DigestMismatchError(f"{what}: content does not match its digest",
                                      expected=digest, actual=actual)

    def read_blob(self, repository: str, digest: str, *, max_bytes: int = 64 * 1024 * 1024,
                  size: int | None = None) -> bytes:
        """Return a (small) blob's verified bytes, e.g. an image config."""
        buf = bytearray()
        for chunk in self.iter_blob(repository, digest, size=size):
            buf += chunk
            if len(buf) > max_bytes:
                raise InvalidManifestError(
                    f"the blob {digest} in {repository} is over {max_bytes} bytes",
                    hint="Use fetch_blob() to write large blobs to a file.",
                )
        return bytes(buf)

    def fetch_blob(self, repository: str, digest: str, path: str | os.PathLike[str], *,
                   size: int | None = None, progress: BlobProgress | None = None) -> int:
        """Download a blob to ``path`` atomically; return its size.

        Bytes go to a temporary file beside ``path`` which is renamed into place
        only once the digest checks out: on any failure nothing is left behind.
        """
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=directory)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_blob(repository, digest, size=size, progress=progress):
                    out.write(chunk)
                    written += len(chunk)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return written

    def read_blob_range(self, repository: str, digest: str, start: int, end: int) -> bytes:
        """Return bytes ``start..end`` (inclusive; negative ``start`` = suffix) unverified.

        Used for the gzip trailer (ISIZE) of a layer; the caller knows these bytes
        cannot be checked against the digest.
        """
        rng = f"bytes={start}" if start < 0 else f"bytes={start}-{end}"
        response = self.transport.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scopes=[_repo_scope(repository)],
            headers={"Range": rng}, stream=True,
        )
        try:
            raise_for_status(response, f"read part of the blob {digest}")
            if response.status_code != 206:
                raise RegistryHTTPError(
                    f"the registry ignored the Range request for {digest}",
                    status=response.status_code,
                )
            wanted = -start if start < 0 else end - start + 1
            return self._read_bounded(response, wanted, f"read part of the blob {digest}")
        finally:
            response.close()

    # --------------------------------------------------------------- uploads

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Ask the registry to mount ``digest`` from another repository.

        Returns ``None`` when mounted (201); otherwise the upload location the
        registry opened instead (202), ready for a normal upload.
        """
        query = urlencode({"mount": digest, "from": from_repository})
        response = self.transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/?{query}",
            scopes=[_repo_scope(repository, "pull,push"), _repo_scope(from_repository)],
        )
        raise_for_status(response, f"mount the blob {digest} into {repository}")
        if response.status_code == 201:
            return None
        return self._location(response, repository)

    def _start_upload(self, repository: str) -> tuple[str, int]:
        response = self.transport.request(
            "POST", f"/v2/{repository}/blobs/uploads/",
            scopes=[_repo_scope(repository, "pull,push")],
        )
        raise_for_status(response, f"start a blob upload to {repository}")
        min_chunk = response.headers.get("OCI-Chunk-Min-Length", "")
        return self._location(response, repository), int(min_chunk) if min_chunk.isdigit() else 0

    @staticmethod
    def _location(response: requests.Response, repository: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryHTTPError(
                f"the registry opened an upload to {repository} without a Location",
                status=response.status_code,
            )
        return location

    @staticmethod
    def _with_query(location: str, **params: str) -> str:
        sep = "&" if "?" in location else "?"
        return location + sep + urlencode(params)

    def upload_blob(self, repository: str, data: bytes | IO[bytes] | Iterable[bytes],
                    digest: str, size: int | None = None, *,
                    mount_from: str | None = None, skip_existing: bool = True,
                    progress: BlobProgress | None = None) -> bool:
        """Upload a blob unless the repository has it; return True when bytes moved.

        ``data`` is bytes, a seekable binary file (resumable after a dropped
        connection), or an iterable of chunks (streamed in one request). The
        registry verifies ``digest`` when the upload closes; a mismatch raises
        :class:`DigestMismatchError` and the registry keeps nothing.
        """
        parse_digest(digest)
        if isinstance(data, (bytes, bytearray, memoryview)):
            size = len(data) if size is None else size
        if skip_existing and self.blob_exists(repository, digest):
            if progress is not None and size is not None:
                progress(size, size)
            return False
        location: str | None = None
        min_chunk = 0
        if mount_from and mount_from != repository:
            location = self.mount_blob(repository, digest, mount_from)
            if location is None:
                if progress is not None and size is not None:
                    progress(size, size)
                return False
        if location is None:
            location, min_chunk = self._start_upload(repository)
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) <= MONOLITHIC_LIMIT:
                self._finish_upload(repository, location, digest, bytes(data))
                if progress is not None:
                    progress(len(data), len(data))
                return True
            data = io.BytesIO(data)
        if hasattr(data, "read") and hasattr(data, "seek"):
            self._upload_chunks(repository, location, data, digest, size, min_chunk, progress)
        else:
            self._upload_stream(repository, location, data, digest, size, progress)  # type: ignore[arg-type]
        return True

    def _finish_upload(self, repository: str, location: str, digest: str,
                       body: bytes | None = None) -> None:
        response = self.transport.request(
            "PUT", self._with_query(location, digest=digest),
            scopes=[_repo_scope(repository, "pull,push")],
            headers={"Content-Type": "application/octet-stream"}, data=body or b"",
        )
        self._raise_upload(response, repository, digest)

    @staticmethod
    def _raise_upload(response: requests.Response, repository: str, digest: str) -> None:
        if response.status_code == 400:
            try:
                codes = [e.get("code") for e in response.json().get("errors", [])]
            except (ValueError, AttributeError):
                codes = []
            if "DIGEST_INVALID" in codes or "SIZE_INVALID" in codes:
                raise DigestMismatchError(
                    f"the registry refused the upload of {digest} to {repository}",
                    expected=digest, actual="content with another digest",
                )
        raise_for_status(response, f"upload the blob {digest} to {repository}")

    def _upload_status(self, repository: str, location: str) -> int:
        """Ask the registry how many bytes of an upload it holds (from its Range)."""
        response = self.transport.request("GET", location,
                                          scopes=[_repo_scope(repository, "pull,push")])
        raise_for_status(response, f"check the upload progress in {repository}")
        rng = response.headers.get("Range", "")
        if "-" in rng:
            return int(rng.rsplit("-", 1)[1]) + 1
        return 0

    def _upload_chunks(self, repository: str, location: str, source: IO[bytes], digest: str,
                       size: int | None, min_chunk: int, progress: BlobProgress | None) -> None:
        chunk_size = max(UPLOAD_CHUNK, min_chunk)
        start = source.tell()
        offset = 0
        attempts = 0
        while True:
            source.seek(start + offset)
            chunk = source.read(chunk_size)
            if not chunk:
                break
            end = offset + len(chunk) - 1
            try:
                response = self.transport.request(
                    "PATCH", location, scopes=[_repo_scope(repository, "pull,push")],
                    headers={"Content-Type": "application/octet-stream",
                             "Content-Range": f"{offset}-{end}"},
                    data=chunk,
                )
            except (RegistryUnavailableError, *_DROPPED):
                attempts += 1
                if attempts > RESUME_ATTEMPTS:
                    raise
                log.info("chunked upload of %s dropped at %d; asking the registry", digest, offset)
                offset = self._upload_status(repository, location)
                continue
            raise_for_status(response, f"upload a chunk of {digest} to {repository}")
            location = self._location(response, repository)
            offset = end + 1
            rng = response.headers.get("Range", "")
            if "-" in rng:
                offset = int(rng.rsplit("-", 1)[1]) + 1
            if progress is not None:
                progress(offset, size)
        self._finish_upload(repository, location, digest)

    def _upload_stream(self, repository: str, location: str, chunks: Iterable[bytes],
                       digest: str, size: int | None, progress: BlobProgress | None) -> None:
        sent = 0

        def counted() -> Iterator[bytes]:
            nonlocal sent
            for chunk in chunks:
                sent += len(chunk)
                if progress is not None:
                    progress(sent, size)
                yield chunk

        response = self.transport.request(
            "PATCH", location, scopes=[_repo_scope(repository, "pull,push")],
            headers={"Content-Type": "application/octet-stream"}, data=counted(),
        )
        raise_for_status(response, f"upload {digest} to {repository}")
        self._finish_upload(repository, self._location(response, repository), digest)

