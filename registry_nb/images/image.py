"""One image abstraction over interchangeable stores.

An image is a manifest, a config and layers, read lazily from an
:class:`ImageStore` (where manifests and blobs come from: a registry repository,
an OCI image layout, a ``docker save`` tarball, an image being assembled). The
copier (:mod:`registry_nb.copy`) moves images from any store to any
:class:`ImageSink` (a registry repository or an OCI image layout).

The contract every store keeps: :meth:`ImageStore.iter_blob` yields a blob's
bytes and raises :class:`~registry_nb.errors.DigestMismatchError` *after the last
chunk* when they do not hash to the descriptor's digest (or length), so a sink
must commit nothing until the iterator is exhausted without error.
"""

from __future__ import annotations

import logging
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from ..errors import (
    AuthenticationError,
    InvalidManifestError,
    RegistryError,
    RegistryHTTPError,
    UnsupportedMediaTypeError,
)
from ..oci import (
    DOCKER_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    Platform,
)
from ..oci.digest import verified_chunks as oci_verified_chunks
from ..remote.distribution import RegistryClient

__all__ = [
    "zstd_layers",
    "explain_unpack_failure",
    "BlobProgress",
    "ImageStore",
    "ImageSink",
    "Image",
    "ImageIndex",
    "Layer",
    "RegistryRepository",
    "open_image",
    "ResolvedImage",
    "resolve_image",
    "verified_chunks",
    "gzip_isize",
    "GZIP_LAYER_TYPES",
    "SMALL_BLOB",
]

log = logging.getLogger(__name__)

#: Receives (bytes done, bytes total or None) while a blob moves.
BlobProgress = Callable[[int, "int | None"], None]

#: Layer media types whose blobs are gzip streams (ISIZE applies).
GZIP_LAYER_TYPES = frozenset({OCI_LAYER_GZIP, OCI_LAYER_NONDISTRIBUTABLE_GZIP, DOCKER_LAYER,
                              "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"})
#: Blobs up to this size are read whole (verified) and written in one request.
SMALL_BLOB = 1024 * 1024
#: Largest config blob read into memory.
_MAX_CONFIG = 8 * 1024 * 1024


def short_id(digest: str) -> str:
    """The 12 hex digits docker shows for a layer."""
    return digest.split(":", 1)[-1][:12]


def verified_chunks(chunks: Iterable[bytes], descriptor: Descriptor, what: str,
                    progress: BlobProgress | None = None) -> Iterator[bytes]:
    """Pass ``chunks`` through, raising DigestMismatchError after the last if they are wrong.

    Checks the length against ``descriptor.size`` as bytes arrive (a longer blob
    fails as soon as it overflows) and the digest at the end
    (:func:`registry_nb.oci.digest.verified_chunks`).
    """
    return oci_verified_chunks(chunks, descriptor.digest, descriptor.size, what, progress)


class ImageStore(ABC):
    """Where manifests and blobs come from."""

    #: True when :meth:`iter_blob` itself checks the length as bytes arrive and the
    #: digest after the last chunk, so a sink need not hash the same bytes again.
    verifies_blobs = False

    @abstractmethod
    def describe(self) -> str:
        """A short human name (``127.0.0.1:5000/demo``, ``oci:/tmp/layout``)."""

    @abstractmethod
    def get_manifest(self, reference: str | None) -> Manifest | Index:
        """The manifest or index for a tag or digest (``None``: the store's only image)."""

    @abstractmethod
    def iter_blob(self, descriptor: Descriptor, *,
                  progress: BlobProgress | None = None) -> Iterator[bytes]:
        """The blob's bytes; raises DigestMismatchError after the last chunk if wrong."""

    def read_blob(self, descriptor: Descriptor, *, max_bytes: int = _MAX_CONFIG) -> bytes:
        """A small blob's verified bytes."""
        if descriptor.size > max_bytes:
            raise InvalidManifestError(
                f"the blob {descriptor.digest} is {descriptor.size} bytes, over {max_bytes}",
                hint="Stream large blobs with iter_blob().",
            )
        return b"".join(self.iter_blob(descriptor))

    def read_range(self, descriptor: Descriptor, start: int,
                   end: int | None = None) -> bytes | None:
        """Bytes ``start..end`` (inclusive), unverified; ``None`` when the store cannot.

        A negative ``start`` reads that many bytes from the end (``end`` unset);
        ``end=None`` reads to the end.
        """
        return None

    def open_blob_file(self, descriptor: Descriptor) -> IO[bytes] | None:
        """A seekable local file of the blob (resumable uploads), or ``None``."""
        return None

    def blob_origin(self, descriptor: Descriptor) -> tuple[str, str] | None:
        """``(registry host, repository)`` holding the blob, for cross-repository mounts."""
        return None

    def close(self) -> None:
        """Release what the store holds open."""
        return None


class ImageSink(ABC):
    """Where images are written. Blobs first, then manifests, then the tag."""

    #: The ProgressEvent phase of bytes moving into this sink.
    transfer_phase = "upload"

    @abstractmethod
    def describe(self) -> str:
        """A short human name."""

    @abstractmethod
    def has_blob(self, descriptor: Descriptor) -> bool:
        """True when the sink already holds the blob."""

    def mount_blob(self, descriptor: Descriptor, origin: tuple[str, str]) -> bool:
        """Link a blob from ``origin`` without moving bytes; False when not possible."""
        return False

    @abstractmethod
    def write_blob(self, descriptor: Descriptor, source: ImageStore, *,
                   progress: BlobProgress | None = None,
                   stop: Callable[[], None] | None = None) -> int:
        """Copy one blob from ``source``; return the bytes moved.

        ``stop`` is called between chunks and raises to abandon the blob, which
        must then leave nothing behind.
        """

    @abstractmethod
    def put_manifest(self, manifest: Manifest | Index, tag: str | None, *, top: bool) -> None:
        """Store a manifest whose blobs are all present.

        Child manifests (``top=False``) are stored by digest; the top one is tagged.
        """

    def discard(self, digests: Iterable[str]) -> None:
        """Forget blobs this transfer wrote before it failed (when the sink can)."""
        return None

    def close(self) -> None:
        """Release what the sink holds open."""
        return None


# ------------------------------------------------------------------ lazy images


class Layer:
    """One layer of an image: its descriptor, diff id and a way to read it."""

    def __init__(self, store: ImageStore, descriptor: Descriptor,
                 diff_id: str | None) -> None:
        self.store = store
        self.descriptor = descriptor
        self.diff_id = diff_id

    @property
    def digest(self) -> str:
        """Digest of the (possibly compressed) blob."""
        return self.descriptor.digest

    @property
    def size(self) -> int:
        """Size of the blob in bytes."""
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        """The layer's media type."""
        return self.descriptor.media_type

    def iter_bytes(self, *, progress: BlobProgress | None = None) -> Iterator[bytes]:
        """The blob's bytes, verified at the end."""
        return self.store.iter_blob(self.descriptor, progress=progress)

    def uncompressed_size(self) -> int | None:
        """Uncompressed size from the gzip trailer (see :func:`gzip_isize`)."""
        return gzip_isize(self.store, self.descriptor)

    def __repr__(self) -> str:
        return f"Layer({self.digest!r}, size={self.size})"


class Image:
    """A single-platform image; the config is read on first use."""

    def __init__(self, store: ImageStore, manifest: Manifest) -> None:
        self.store = store
        self.manifest = manifest
        self._config: ImageConfig | None = None

    @property
    def digest(self) -> str:
        """Digest of the manifest."""
        return self.manifest.digest

    @property
    def media_type(self) -> str:
        """Media type of the manifest."""
        return self.manifest.media_type

    @property
    def config(self) -> ImageConfig:
        """The parsed image config (read on first use, then kept)."""
        # Not functools.cached_property: before Python 3.12 it takes one lock shared by
        # every instance, so a listing's threads read their configs one at a time (one
        # round trip each). Two threads reading one image's config share one fetch
        # through the client's content cache.
        if self._config is None:
            self._config = ImageConfig.from_bytes(self.store.read_blob(self.manifest.config))
        return self._config

    @property
    def platform(self) -> Platform:
        """The platform the config names."""
        return self.config.platform

    @property
    def layers(self) -> list[Layer]:
        """Layers in order, paired with the config's diff ids when they line up."""
        descriptors = self.manifest.layers
        diff_ids: list[str | None] = list(self.config.diff_ids)
        if len(diff_ids) != len(descriptors):
            diff_ids = [None] * len(descriptors)
        return [Layer(self.store, d, i) for d, i in zip(descriptors, diff_ids, strict=True)]

    @property
    def blobs(self) -> list[Descriptor]:
        """The config and every layer descriptor."""
        return [self.manifest.config, *self.manifest.layers]

    def __repr__(self) -> str:
        return f"Image({self.store.describe()!r}, {self.digest!r})"


class ImageIndex:
    """A multi-platform index; child manifests are fetched on demand."""

    def __init__(self, store: ImageStore, index: Index) -> None:
        self.store = store
        self.index = index

    @property
    def digest(self) -> str:
        """Digest of the index."""
        return self.index.digest

    @property
    def media_type(self) -> str:
        """Media type of the index."""
        return self.index.media_type

    @property
    def manifests(self) -> list[Descriptor]:
        """The index entries."""
        return list(self.index.manifests)

    def child(self, descriptor: Descriptor) -> Image | ImageIndex:
        """Open one entry (an image or a nested index)."""
        return _wrap(self.store, self.store.get_manifest(descriptor.digest))

    def image(self, platform: Platform | str | None = None) -> Image:
        """The image for ``platform`` (default: this machine's, then linux/amd64)."""
        child = self.child(self.index.select(platform))
        if not isinstance(child, Image):
            raise RegistryError(f"the entry for {platform} in {self.digest} is a nested index",
                                hint="Open it with child() and select again.")
        return child

    def __repr__(self) -> str:
        return f"ImageIndex({self.store.describe()!r}, {self.digest!r})"


def _wrap(store: ImageStore, manifest: Manifest | Index) -> Image | ImageIndex:
    return ImageIndex(store, manifest) if isinstance(manifest, Index) else Image(store, manifest)


def open_image(store: ImageStore, reference: str | None = None) -> Image | ImageIndex:
    """Open the image or index ``reference`` (tag or digest) names in ``store``."""
    return _wrap(store, store.get_manifest(reference))


def zstd_layers(store: ImageStore, reference: str | None) -> list[str]:
    """Digests of the zstd-compressed layers of the image ``reference`` names
    (for an index, the image of this machine's platform)."""
    top = open_image(store, reference)
    image = top if isinstance(top, Image) else top.image()
    return [layer.digest for layer in image.manifest.layers
            if layer.media_type.endswith("+zstd")]


def explain_unpack_failure(store: ImageStore, reference: str | None, name: str,
                           exc: RegistryError) -> RegistryError:
    """An engine's failure to unpack a pulled layer, made definite when the image that
    ``reference`` names in ``store`` has zstd layers; else ``exc`` itself."""
    if "could not unpack a layer" not in exc.message:
        return exc
    try:
        zstd = zstd_layers(store, reference)
    except RegistryError:
        return exc
    if not zstd:
        return exc
    return UnsupportedMediaTypeError(
        f"pull of {name} failed: {len(zstd)} of its layers are zstd-compressed "
        f"({zstd[0]}...), which this Docker engine cannot unpack.", hint=exc.hint)


@dataclass(frozen=True)
class ResolvedImage:
    """What a reader of one image needs: the manifest or index the reference names
    (``top``), the image selected from it, and every platform of an index."""

    top: Manifest | Index
    image: Image
    platforms: list[str] | None = None

    @property
    def manifest(self) -> Manifest:
        """The selected image's manifest."""
        return self.image.manifest

    @property
    def config(self) -> ImageConfig:
        """The selected image's config (read and verified on first use)."""
        return self.image.config


def resolve_image(store: ImageStore, reference: str | None = None,
                  platform: Platform | str | None = None) -> ResolvedImage:
    """Open ``reference``, select ``platform`` when it is an index, read the config.

    The one way readers open an image: frames, sizes, audits and the browser all
    come through here. A nested index raises :class:`RegistryError`.
    """
    top = open_image(store, reference)
    if isinstance(top, Image):
        resolved = ResolvedImage(top.manifest, top)
    else:
        platforms = [str(p) for p in top.index.platforms]
        child = top.child(top.index.select(platform))
        if not isinstance(child, Image):
            raise RegistryError(f"{store.describe()}@{child.digest} is a nested index",
                                hint="Nested indexes are not supported yet.")
        resolved = ResolvedImage(top.index, child, platforms)
    resolved.config  # noqa: B018 - read (and verify) the config now, as readers expect
    return resolved


def gzip_isize(store: ImageStore, descriptor: Descriptor) -> int | None:
    """A gzip layer's uncompressed size from its last four bytes (ISIZE), or ``None``.

    ``None`` for layers that are not gzip (uncompressed tar, zstd...), too short,
    or whose store cannot read a range. Caveats: ISIZE is the size modulo 2**32,
    so a layer over 4 GiB uncompressed reports the remainder; for a multi-member
    gzip stream (pigz --independent, concatenated gzip files) it is the last
    member's size only.
    """
    if descriptor.media_type not in GZIP_LAYER_TYPES or descriptor.size < 18:
        return None
    tail = store.read_range(descriptor, -4)
    if tail is None or len(tail) != 4:
        return None
    return int(struct.unpack("<I", tail)[0])


# ------------------------------------------------------------------ registry


class RegistryRepository(ImageStore, ImageSink):
    """One repository of a registry, as a source and as a destination."""

    transfer_phase = "upload"
    verifies_blobs = True  # RegistryClient.iter_blob hashes while it streams

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository

    def describe(self) -> str:
        return f"{self.client.host}/{self.repository}"

    def __repr__(self) -> str:
        return f"RegistryRepository({self.describe()!r})"

    # -- source

    def get_manifest(self, reference: str | None) -> Manifest | Index:
        return self.client.get_manifest(self.repository, reference or "latest")

    def iter_blob(self, descriptor: Descriptor, *,
                  progress: BlobProgress | None = None) -> Iterator[bytes]:
        return self.client.iter_blob(self.repository, descriptor.digest, size=descriptor.size,
                                     progress=progress)

    def read_blob(self, descriptor: Descriptor, *, max_bytes: int = _MAX_CONFIG) -> bytes:
        return self.client.read_blob(self.repository, descriptor.digest, max_bytes=max_bytes,
                                     size=descriptor.size)

    def read_range(self, descriptor: Descriptor, start: int,
                   end: int | None = None) -> bytes | None:
        return self.client.read_blob_range(self.repository, descriptor.digest, start, end)

    def blob_origin(self, descriptor: Descriptor) -> tuple[str, str] | None:
        return self.client.host, self.repository

    # -- sink

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self.client.blob_exists(self.repository, descriptor.digest)

    def mount_blob(self, descriptor: Descriptor, origin: tuple[str, str]) -> bool:
        host, repository = origin
        if host != self.client.host or repository == self.repository:
            return False
        try:
            location = self.client.mount_blob(self.repository, descriptor.digest, repository)
        except (AuthenticationError, RegistryHTTPError) as exc:
            # e.g. a token without pull on the other repository: upload instead
            log.info("mount of %s from %s refused (%s); uploading", descriptor.digest,
                     repository, exc)
            return False
        if location is None:
            return True
        # The registry opened an upload instead; abandon it (it expires on its own).
        try:
            self.client.transport.request(
                "DELETE", location, scopes=[f"repository:{self.repository}:pull,push"]
            ).close()
        except RegistryError:
            pass
        return False

    def write_blob(self, descriptor: Descriptor, source: ImageStore, *,
                   progress: BlobProgress | None = None,
                   stop: Callable[[], None] | None = None) -> int:
        def report(done: int, total: int | None) -> None:
            if stop is not None:
                stop()  # raising here abandons a chunked upload between chunks
            if progress is not None:
                progress(done, total)

        local = source.open_blob_file(descriptor)
        if local is not None:  # a seekable file: chunked upload, resumable
            with local:
                self.client.upload_blob(self.repository, local, descriptor.digest,
                                        descriptor.size, skip_existing=False, progress=report)
            return descriptor.size
        if descriptor.size <= SMALL_BLOB:
            data = source.read_blob(descriptor, max_bytes=SMALL_BLOB)
            if stop is not None:
                stop()
            self.client.upload_blob(self.repository, data, descriptor.digest,
                                    skip_existing=False, progress=progress)
            return len(data)
        def stream() -> Iterator[bytes]:
            return _guarded(source.iter_blob(descriptor), stop)

        # reopen: a registry that refuses the stream as sent (GHCR caps PATCH bodies)
        # gets it again in chunks it takes
        self.client.upload_blob(self.repository, stream(), descriptor.digest,
                                descriptor.size, skip_existing=False, progress=report,
                                reopen=stream)
        return descriptor.size

    def put_manifest(self, manifest: Manifest | Index, tag: str | None, *, top: bool) -> None:
        reference = tag if top and tag else manifest.digest
        self.client.put_manifest(self.repository, reference, manifest.raw, manifest.media_type)


def _guarded(chunks: Iterator[bytes], stop: Callable[[], None] | None) -> Iterator[bytes]:
    """Yield ``chunks``, calling ``stop`` before each; always close the source."""
    try:
        for chunk in chunks:
            if stop is not None:
                stop()
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
