"""A client for the OCI distribution HTTP API (``/v2/``).

:class:`RegistryClient` speaks the API of one registry through a
:class:`~registry_nb.transport.Transport` (which owns the session, the auth flow
and the retries). Every byte it hands back is verified: manifests fetched by
digest and every blob are hashed while they stream and refused on a mismatch.

Uploads survive dropped connections: a chunked upload asks the registry how much
it holds (its ``Range``) and goes on from there; when the registry has lost or
cancelled the upload session (distribution does when a PATCH was cut halfway),
the upload starts again from the first byte.

This module is longer than 600 lines: one client class for the whole API (uploads,
pagination and probing already live beside it).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import IO, Any

import requests

from ..errors import (
    DigestMismatchError,
    InvalidManifestError,
    RegistryHTTPError,
    RegistryUnavailableError,
    UnsupportedMediaTypeError,
)
from ..oci import (
    MANIFEST_ACCEPT,
    MANIFEST_MEDIA_TYPES,
    MAX_MANIFEST_BYTES,
    SCHEMA1_MEDIA_TYPES,
    Index,
    Manifest,
    parse_manifest,
)
from ..oci.digest import DigestVerifier, digest_of, verify_bytes
from ..oci.reference import parse_digest
from .auth import CATALOG_SCOPE, repository_scope
from .cache import CachedContent, ContentCache
from .chunks import resume_offset
from .deletes import send_delete
from .listings import Listing, iter_names
from .probe import RegistryProbe
from .referrers import ReferrersAnswer, fetch_referrers
from .responses import DROPPED, raise_for_status, raw_chunks
from .transport import Transport
from .uploads import RESUME_ATTEMPTS, BlobProgress, BlobUploader

__all__ = ["RegistryClient", "ManifestHead", "BlobProgress"]

log = logging.getLogger(__name__)

#: Sends of a manifest the registry said names an unknown blob (see put_manifest).
MANIFEST_PUT_ATTEMPTS = 2
MANIFEST_PUT_PAUSE = 0.3

#: Read size for blob downloads: large enough that Python's per-chunk overhead
#: vanishes next to hashing (8 KiB chunks run at under half the speed).
READ_CHUNK = 1024 * 1024



@dataclass(frozen=True)
class ManifestHead:
    """What a manifest HEAD tells without the body."""

    digest: str | None
    media_type: str | None
    size: int | None


def _is_digest(reference: str) -> bool:
    """True for ``algo:hex`` (validated); tags cannot contain ``:``."""
    if ":" not in reference:
        return False
    parse_digest(reference)
    return True


class RegistryClient:
    """Calls of the distribution API on one registry.

    ``RegistryClient.connect("127.0.0.1:5000")`` builds the transport; pass a
    ready :class:`Transport` to share one session between clients.
    """

    def __init__(self, transport: Transport, cache: ContentCache | None = None) -> None:
        self.transport = transport
        #: Manifests by digest and small blobs (configs), reused; tags revalidated.
        self.cache = cache
        #: Blob uploads (mounts, chunks, resumes) through the same transport.
        self.uploads = BlobUploader(transport, self.blob_exists)
        #: Tells "not a registry" from "no such manifest" after a failure.
        self.probe = RegistryProbe(transport)
        #: ``referrers(repository, digest, artifact_type=None)``: see fetch_referrers.
        self.referrers: Callable[..., ReferrersAnswer | None] = partial(fetch_referrers, transport)

    @classmethod
    def connect(
        cls, registry: str, credentials: Any = None, *, cache: ContentCache | None = None,
        **transport_options: Any,
    ) -> RegistryClient:
        """Create a client (and its transport) for ``registry`` (``host[:port]`` or URL)."""
        return cls(Transport(registry, credentials, **transport_options), cache)

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

    def catalog(self, *, page_size: int | None = None, limit: int | None = None) -> Iterator[str]:
        """Yield repository names from ``/v2/_catalog``, following every page.

        ``page_size`` is sent as ``n`` (capped at 1000) on the first request; later
        pages follow the registry's ``Link`` header (see :mod:`.listings`).
        """
        with self.probe.explaining():
            yield from iter_names(self.transport, "/v2/_catalog", "repositories",
                                  [CATALOG_SCOPE], page_size, limit,
                                  "list the registry's catalog")

    def tags(self, repository: str, *, page_size: int | None = None,
             limit: int | None = None) -> list[str]:
        """Return the tags of ``repository`` (every page; entries that are not tags,
        such as ``null`` or digests, are skipped: :meth:`list_tags` reports them)."""
        return self.list_tags(repository, page_size=page_size, limit=limit).names

    def list_tags(self, repository: str, *, page_size: int | None = None,
                  limit: int | None = None) -> Listing:
        """The tags of ``repository`` (every page) and the entries skipped as not tags."""
        listing = Listing()
        with self.probe.explaining():
            listing.names = list(iter_names(
                self.transport, f"/v2/{repository}/tags/list", "tags",
                [repository_scope(repository)], page_size, limit,
                f"list the tags of {repository}", listing.skipped))
        return listing

    # ------------------------------------------------------------- manifests

    def get_manifest(self, repository: str, reference: str, *,
                     accept: str = MANIFEST_ACCEPT) -> Manifest | Index:
        """Fetch and parse a manifest or index by tag or digest.

        A digest reference is verified against the bytes received, and so is the
        registry's ``Docker-Content-Digest``; a tag's digest is computed from the
        bytes (``.digest`` of the result). Bodies over 4 MiB are refused. With a
        cache, a digest is fetched at most once, and a tag seen before is asked for
        with ``If-None-Match`` (a 304 answer takes the manifest from the cache).
        """
        with self.probe.explaining():
            return self._get_manifest(repository, reference, accept)

    def _get_manifest(self, repository: str, reference: str, accept: str) -> Manifest | Index:
        by_digest = _is_digest(reference)
        cache = self.cache
        if cache is None:
            raw, content_type, _ = self._read_manifest(repository, reference, accept)
            assert raw is not None
            return parse_manifest(raw, content_type)
        if by_digest:
            def load() -> CachedContent:
                raw, content_type, _ = self._read_manifest(repository, reference, accept)
                assert raw is not None
                return CachedContent(raw, content_type)

            content = cache.fetch(reference, load, "manifest")
            return parse_manifest(content.data, content.media_type)
        # A tag moves: ask the registry each time, "still this one?" when we know it.
        key = (self.host, repository, reference, accept)
        hint = cache.tag_hint(*key)
        cached = cache.get(hint[1], "manifest") if hint is not None else None
        etag = hint[0] if hint is not None and cached is not None else None
        raw, content_type, new_etag = self._read_manifest(repository, reference, accept,
                                                          if_none_match=etag)
        if raw is None:  # 304 Not Modified: the tag still names the cached manifest
            assert cached is not None
            return parse_manifest(cached.data, cached.media_type)
        manifest = parse_manifest(raw, content_type)
        cache.put(manifest.digest, raw, content_type, "manifest")
        if new_etag:
            cache.remember_tag(new_etag, manifest.digest, *key)
        else:
            cache.forget_tag(*key)
        return manifest

    def _read_manifest(self, repository: str, reference: str, accept: str, *,
                       if_none_match: str | None = None
                       ) -> tuple[bytes | None, str | None, str | None]:
        """(verified bytes, Content-Type, ETag); bytes are None on 304 to ``if_none_match``."""
        by_digest = _is_digest(reference)
        what = (f"get the manifest {repository}@{reference}" if by_digest
                else f"get the manifest {repository}:{reference}")
        headers = {"Accept": accept}
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        for attempt in range(RESUME_ATTEMPTS + 1):
            response = self.transport.request(
                "GET", f"/v2/{repository}/manifests/{reference}",
                scopes=[repository_scope(repository)], headers=headers, stream=True,
            )
            try:
                if if_none_match and response.status_code == 304:
                    return None, None, if_none_match
                raise_for_status(response, what)
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > MAX_MANIFEST_BYTES:
                    raise InvalidManifestError(
                        f"{what}: the manifest is {int(declared)} bytes, over the "
                        f"{MAX_MANIFEST_BYTES}-byte limit",
                        hint="Registries and docker refuse manifests this large; "
                        "this is not an image.",
                    )
                try:
                    raw = self._read_bounded(response, MAX_MANIFEST_BYTES, what)
                    break
                except RegistryUnavailableError:  # dropped mid-body: small, fetch again
                    if attempt == RESUME_ATTEMPTS:
                        raise
                    log.info("%s: the connection dropped mid-body; fetching it again", what)
            finally:
                response.close()
        if by_digest:
            verify_bytes(raw, reference, what)
        header_digest = response.headers.get("Docker-Content-Digest")
        if header_digest and header_digest.startswith(("sha256:", "sha512:")):
            actual = digest_of(raw, header_digest)
            if header_digest != actual:
                raise DigestMismatchError(
                    f"{what}: the registry's Docker-Content-Digest does not match the body",
                    expected=header_digest, actual=actual,
                )
        return raw, response.headers.get("Content-Type"), response.headers.get("ETag")

    @staticmethod
    def _read_bounded(response: requests.Response, limit: int, what: str) -> bytes:
        buf = bytearray()
        try:
            for chunk in raw_chunks(response, 64 * 1024):
                buf += chunk
                if len(buf) > limit:
                    raise InvalidManifestError(
                        f"{what}: the body is over the {limit}-byte limit",
                        hint="Registries and docker refuse manifests this large.",
                    )
        except DROPPED as exc:
            raise RegistryUnavailableError(f"{what}: the connection dropped mid-body ({exc})",
                                           hint="Try again; check the registry.") from exc
        return bytes(buf)

    def head_manifest(self, repository: str, reference: str, *,
                      accept: str = MANIFEST_ACCEPT) -> ManifestHead | None:
        """HEAD a manifest: its digest, media type and size, or ``None`` when absent.

        For a digest reference, a different ``Docker-Content-Digest`` raises
        :class:`DigestMismatchError`.
        """
        by_digest = _is_digest(reference)
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/manifests/{reference}",
            scopes=[repository_scope(repository)],
            headers={"Accept": accept},
        )
        response.close()
        if response.status_code == 404:
            return None
        raise_for_status(response, f"check the manifest {repository}:{reference}")
        length = response.headers.get("Content-Length", "")
        content_type = response.headers.get("Content-Type")
        digest = response.headers.get("Docker-Content-Digest")
        if by_digest and digest and digest != reference:
            raise DigestMismatchError(
                f"HEAD {repository}@{reference}: the registry names another digest",
                expected=reference, actual=digest,
            )
        return ManifestHead(
            digest=digest or (reference if by_digest else None),
            media_type=content_type.split(";")[0].strip() if content_type else None,
            size=int(length) if length.isdigit() else None,
        )

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """Upload a manifest or index under a tag or digest; return its digest.

        Only OCI manifests and indexes and Docker v2 manifests and lists are sent:
        schema 1 and unknown media types raise :class:`UnsupportedMediaTypeError`.
        """
        base_type = media_type.split(";")[0].strip()
        if base_type in SCHEMA1_MEDIA_TYPES:
            raise UnsupportedMediaTypeError(
                f"refusing to push a Docker schema 1 manifest ({base_type})",
                hint="Schema 1 is deprecated and refused by current registries; convert the "
                "image to Docker schema 2 or OCI.",
            )
        if base_type not in MANIFEST_MEDIA_TYPES:
            raise UnsupportedMediaTypeError(
                f"cannot push a manifest of media type {base_type!r}",
                hint="Use an OCI image manifest or index, or a Docker v2 manifest or list.",
            )
        raw = bytes(raw)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidManifestError(
                f"the manifest is {len(raw)} bytes, over the {MAX_MANIFEST_BYTES}-byte limit",
                hint="Registries refuse manifests this large; split the index or drop layers.",
            )
        by_digest = _is_digest(reference)
        digest = digest_of(raw, reference if by_digest else "sha256:")
        if by_digest and reference != digest:
            raise DigestMismatchError("manifest put by digest", expected=reference, actual=digest)
        for attempt in range(MANIFEST_PUT_ATTEMPTS):
            response = self.transport.request(
                "PUT", f"/v2/{repository}/manifests/{reference}",
                scopes=[repository_scope(repository, "pull", "push")],
                headers={"Content-Type": base_type}, data=raw,
            )
            try:
                raise_for_status(response, f"push the manifest {repository}:{reference}")
            except RegistryHTTPError as exc:
                # distribution rewrites a repository's blob link on every commit of that
                # blob (truncate, then write): a manifest checked at that moment names a
                # blob "unknown" that another client is committing again. Once more,
                # after a pause; a blob really missing fails the same way twice.
                if (attempt + 1 < MANIFEST_PUT_ATTEMPTS and exc.status == 400
                        and "MANIFEST_BLOB_UNKNOWN" in exc.message):
                    log.info("push of %s:%s: a blob read as unknown; sending it again",
                             repository, reference)
                    time.sleep(MANIFEST_PUT_PAUSE)
                    continue
                raise
            break
        response.close()
        returned = response.headers.get("Docker-Content-Digest")
        if returned and returned.split(":", 1)[0] == digest.split(":", 1)[0] \
                and returned != digest:
            raise DigestMismatchError("the registry stored the manifest under another digest",
                                      expected=digest, actual=returned)
        return digest

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest (the registry must allow deletes)."""
        parse_digest(digest)
        response = send_delete(self.transport, f"/v2/{repository}/manifests/{digest}",
                               repository)
        raise_for_status(response, f"delete the manifest {repository}@{digest}")
        response.close()

    # ----------------------------------------------------------------- blobs

    def blob_size(self, repository: str, digest: str) -> int | None:
        """HEAD a blob: its size in bytes (-1 when not given), or ``None`` when absent."""
        parse_digest(digest)
        response = self.transport.request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scopes=[repository_scope(repository)],
        )
        response.close()
        if response.status_code == 404:
            return None
        raise_for_status(response, f"check the blob {digest} in {repository}")
        length = response.headers.get("Content-Length", "")
        return int(length) if length.isdigit() else -1

    def blob_exists(self, repository: str, digest: str) -> bool:
        """True when ``repository`` holds the blob ``digest``."""
        return self.blob_size(repository, digest) is not None

    def iter_blob(self, repository: str, digest: str, *, size: int | None = None,
                  progress: BlobProgress | None = None,
                  chunk_size: int | None = None) -> Iterator[bytes]:
        """Stream a blob's bytes, resuming with ``Range`` after a dropped connection.

        The bytes are those on the wire (no Content-Encoding decoding). The digest
        (and ``size`` when given) is checked when the stream ends: a mismatch raises
        :class:`DigestMismatchError` after the last chunk, so consumers must treat
        what they received as unverified until the iterator is exhausted without
        error (:meth:`fetch_blob` does this for files).
        """
        chunk_size = chunk_size or READ_CHUNK
        what = f"download the blob {digest} from {repository}"
        verifier = DigestVerifier(digest, size, what=what)
        path = f"/v2/{repository}/blobs/{digest}"
        scopes = [repository_scope(repository)]
        done = 0
        failures = 0
        total = size
        while total is None or done < total or done == 0:
            headers = {"Accept-Encoding": "identity"}
            if done:
                headers["Range"] = f"bytes={done}-"
            response = self.transport.request("GET", path, scopes=scopes, headers=headers,
                                              stream=True)
            before = done
            try:
                raise_for_status(response, what)
                skip, announced = resume_offset(response, done, what)
                if total is None:
                    total = announced
                length = response.headers.get("Content-Length", "")
                if not done and length.isdigit():
                    if size is not None and int(length) != size:
                        raise DigestMismatchError(f"{what}: wrong length",
                                                  expected=f"{size} bytes",
                                                  actual=f"{length} bytes")
                    total = int(length)
                if total is not None:
                    verifier.expect_size(total)
                for chunk in raw_chunks(response, chunk_size):
                    if skip:  # the registry ignored Range: drop what we already have
                        cut = min(skip, len(chunk))
                        chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                    verifier.update(chunk)
                    done = verifier.done
                    if progress is not None:
                        progress(done, total)
                    yield chunk
                break
            except DROPPED as exc:
                failures = 0 if done > before else failures + 1
                if failures > RESUME_ATTEMPTS:
                    raise RegistryUnavailableError(
                        f"{what}: the connection dropped {failures} times in a row at byte "
                        f"{done} ({type(exc).__name__})",
                        hint="Check the registry and the network, then try again.",
                    ) from exc
                log.info("blob download of %s dropped at %d bytes; resuming", digest, done)
            finally:
                response.close()
        verifier.finish()

    def read_blob(self, repository: str, digest: str, *, max_bytes: int = 64 * 1024 * 1024,
                  size: int | None = None) -> bytes:
        """Return a (small) blob's verified bytes, e.g. an image config.

        With a cache, a blob small enough to keep is read from it, or fetched once
        and kept (content is immutable by digest).
        """
        if size is not None and size > max_bytes:
            raise InvalidManifestError(
                f"the blob {digest} in {repository} is {size} bytes, over {max_bytes}",
                hint="Use fetch_blob() to write large blobs to a file.",
            )
        cache = self.cache
        if cache is None or (size is not None and size > cache.max_item_bytes):
            return self._read_blob(repository, digest, max_bytes, size)
        data = cache.fetch(digest, lambda: CachedContent(
            self._read_blob(repository, digest, max_bytes, size))).data
        if size is not None and len(data) != size:
            raise DigestMismatchError(f"the blob {digest} in {repository}: wrong length",
                                      expected=f"{size} bytes", actual=f"{len(data)} bytes")
        if len(data) > max_bytes:
            raise InvalidManifestError(
                f"the blob {digest} in {repository} is over {max_bytes} bytes",
                hint="Use fetch_blob() to write large blobs to a file.",
            )
        return data

    def _read_blob(self, repository: str, digest: str, max_bytes: int,
                   size: int | None) -> bytes:
        buf = bytearray()
        chunks = self.iter_blob(repository, digest, size=size)
        try:
            for chunk in chunks:
                buf += chunk
                if len(buf) > max_bytes:
                    raise InvalidManifestError(
                        f"the blob {digest} in {repository} is over {max_bytes} bytes",
                        hint="Use fetch_blob() to write large blobs to a file.",
                    )
        finally:
            chunks.close()
        return bytes(buf)

    def fetch_blob(self, repository: str, digest: str, target: str | os.PathLike[str] | IO[bytes],
                   *, size: int | None = None, progress: BlobProgress | None = None) -> int:
        """Download a blob to a path (atomically) or a binary file object; return its size.

        For a path, bytes go to a temporary file beside it, renamed into place only
        once the digest checks out. For a file object, a failure truncates it back
        to where it was (when it can seek). Either way a mismatch leaves nothing.
        """
        if hasattr(target, "write"):
            return self._fetch_to_file(repository, digest, target, size, progress)  # type: ignore[arg-type]
        path = os.fspath(target)  # type: ignore[arg-type]
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                written = self._fetch_to_file(repository, digest, out, size, progress,
                                              rewind=False)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return written

    def _fetch_to_file(self, repository: str, digest: str, out: IO[bytes], size: int | None,
                       progress: BlobProgress | None, *, rewind: bool = True) -> int:
        start: int | None = None
        if rewind:
            try:
                start = out.tell() if out.seekable() else None
            except (AttributeError, OSError, ValueError):
                start = None
        written = 0
        try:
            for chunk in self.iter_blob(repository, digest, size=size, progress=progress):
                out.write(chunk)
                written += len(chunk)
        except BaseException:
            if start is not None:
                try:
                    out.seek(start)
                    out.truncate()
                except (OSError, ValueError):
                    pass
            raise
        return written

    def read_blob_range(self, repository: str, digest: str, start: int,
                        end: int | None = None) -> bytes:
        """Return bytes ``start..end`` (inclusive) of a blob, unverified.

        A negative ``start`` asks for that many bytes from the end (``-4``: the
        gzip trailer's ISIZE); ``end=None`` reads to the end. The caller knows
        these bytes cannot be checked against the digest.
        """
        parse_digest(digest)
        if start < 0:
            if end is not None:
                raise ValueError("a suffix range (negative start) takes no end")
            rng, wanted = f"bytes={start}", -start
        elif end is None:
            rng, wanted = f"bytes={start}-", None
        else:
            if end < start:
                raise ValueError(f"end ({end}) is before start ({start})")
            rng, wanted = f"bytes={start}-{end}", end - start + 1
        what = f"read part of the blob {digest} in {repository}"
        response = self.transport.request(
            "GET", f"/v2/{repository}/blobs/{digest}", scopes=[repository_scope(repository)],
            headers={"Range": rng, "Accept-Encoding": "identity"}, stream=True,
        )
        try:
            raise_for_status(response, what)
            if response.status_code != 206:
                raise RegistryHTTPError(
                    f"{what}: the registry ignored the Range request",
                    status=response.status_code,
                )
            limit = wanted if wanted is not None else 2**63
            data = self._read_bounded(response, limit, what)
        finally:
            response.close()
        return data

    # --------------------------------------------------------------- uploads

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Ask the registry to mount ``digest`` from another repository.

        Returns ``None`` when mounted (201); otherwise the upload location the
        registry opened instead (202), ready for a normal upload.
        """
        return self.uploads.mount(repository, digest, from_repository)[0]

    def upload_blob(self, repository: str, data: bytes | IO[bytes] | Iterable[bytes],
                    digest: str, size: int | None = None, *,
                    mount_from: str | None = None, skip_existing: bool = True,
                    progress: BlobProgress | None = None,
                    reopen: Callable[[], Iterable[bytes]] | None = None) -> bool:
        """Upload a blob unless the repository has it; return True when bytes moved.

        See :meth:`registry_nb.remote.uploads.BlobUploader.upload` (``reopen``: a fresh
        stream of the same bytes, for a stream the registry refused as sent).
        """
        return self.uploads.upload(repository, data, digest, size, mount_from=mount_from,
                                   skip_existing=skip_existing, progress=progress,
                                   reopen=reopen)
