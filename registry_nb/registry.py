"""``ContainerRegistry``: the facade users call from a notebook.

It joins two worlds behind one object: the local Docker engine (:mod:`registry_nb.engine`)
for push, pull, build and local listings, and the registry's HTTP API for everything a
registry can answer without an engine. Each method is a short delegation to the layer
that owns the work, in the manner of docker-py's models over its API and crane over
go-containerregistry: reading goes through :class:`~registry_nb.images.listing.RegistryImages`
(listings, images resolved by platform), moving through :mod:`registry_nb.images.copy`,
audits through :mod:`registry_nb.audits`, frames through :mod:`registry_nb.listings`.

It is longer than 600 lines because it is the one list of the user's entry points and
every method is a few-line delegation; splitting it would scatter the contract.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import listings
from .engine import Engine, build_context
from .engine import auth_config as engine_auth_config
from .errors import EngineError, InvalidReferenceError, RegistryError
from .frames import size_mb
from .images.archive import open_local
from .images.assemble import DEFAULT_CREATED_BY, append_layers, write_layer
from .images.copy import DEFAULT_WORKERS as COPY_WORKERS
from .images.copy import CopyResult, plan_copy, save_to_layout
from .images.copy import copy_image as copy_between
from .images.delete import delete_manifest, delete_tag
from .images.image import Image, explain_unpack_failure, open_image, resolve_image
from .images.listing import (
    DEFAULT_WORKERS,
    RegistryImages,
    display_name,
    full_name,
    reference_on,
    stores_for,
)
from .images.retention import apply_retention_rows, retention_rows
from .interrupt import interruptible
from .listings import ContainerImage, describe, local_image_rows
from .oci import ImageConfig, Platform
from .oci.reference import ImageReference, is_docker_hub, normalize_registry
from .progress import ProgressCallback, ProgressEvent
from .remote.cache import ContentCache
from .remote.credentials import RegistryCredentials
from .remote.distribution import RegistryClient
from .remote.ratelimit import read_rate_limit

if TYPE_CHECKING:  # pandas is imported by frames on first use
    import pandas as pd

__all__ = ["ContainerRegistry", "ContainerImage"]

log = logging.getLogger(__name__)


class ContainerRegistry:
    """A registry (and the local Docker engine) as seen from a notebook.

    ``registry_url`` is ``host[:port]``, an ``http(s)://`` URL, or Docker Hub
    (``""``, ``docker.io``, ``registry.hub.docker.com``). HTTPS is used unless the
    host is loopback or ``insecure=True``. Without ``credentials`` the docker
    config (``$DOCKER_CONFIG/config.json``) is consulted, as docker does.
    """

    def __init__(self, registry_url: str = "", credentials: RegistryCredentials | None = None,
                 *, insecure: bool = False, ca_bundle: str | None = None,
                 engine: Engine | None = None, max_workers: int = DEFAULT_WORKERS,
                 cache: ContentCache | bool = True) -> None:
        self.registry_url = registry_url
        #: Manifests by digest and configs, kept across calls (``cache=False``: none;
        #: ``ContentCache(directory=True)`` adds the user's cache folder).
        self.cache: ContentCache | None = ContentCache() if cache is True else (cache or None)
        self.registry_host = normalize_registry(registry_url)
        self.credentials = credentials
        self.insecure = insecure
        self.ca_bundle = ca_bundle
        self.max_workers = max_workers
        self._engine = engine
        self._images: RegistryImages | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        who = f", user={self.credentials.username!r}" if self.credentials and \
            self.credentials.username else ""
        return f"ContainerRegistry({self.registry_host!r}{who})"

    # ------------------------------------------------------------ plumbing

    @property
    def images(self) -> RegistryImages:
        """This registry's images through its API (created on first use, shared by threads)."""
        with self._lock:
            if self._images is None:
                client = RegistryClient.connect(
                    self.registry_url, self.credentials, insecure=self.insecure,
                    ca_bundle=self.ca_bundle, pool_size=max(self.max_workers, 4),
                    cache=self.cache,
                )
                self._images = RegistryImages(client, workers=self.max_workers)
            return self._images

    @property
    def client(self) -> RegistryClient:
        """The registry API client (created on first use, shared by threads)."""
        return self.images.client

    @property
    def engine(self) -> Engine:
        """The local Docker engine wrapper (from ``DOCKER_HOST`` or the default socket)."""
        with self._lock:
            if self._engine is None:
                self._engine = Engine.from_env()
            return self._engine

    def close(self) -> None:
        """Release connections to the registry and the engine."""
        with self._lock:
            images, self._images = self._images, None
            engine = self._engine
        if images is not None:
            images.client.close()
        if engine is not None:
            engine.close()  # reconnects on the next call

    def __enter__(self) -> ContainerRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def is_docker_hub(self) -> bool:
        """True when this facade talks to Docker Hub."""
        return is_docker_hub(self.registry_host)

    def _get_full_image_name(self, image_name: str, image_tag: str | None = None) -> str:
        """The name docker uses: ``host/name:tag``, without a host for Docker Hub."""
        return full_name(self.registry_host, image_name, image_tag)

    def _reference(self, image_name: str, image_tag: str | None = None) -> ImageReference:
        """What the user typed, on this registry: ``repo``, ``repo:tag``, ``repo@digest``,
        ``host/repo:tag`` of this host; ``image_tag`` a tag or digest (see reference_on)."""
        return reference_on(self.registry_host, image_name, image_tag)

    def _named(self, image_name: str, image_tag: str | None = None, *,
               writes: bool = False) -> tuple[ImageReference, str]:
        """The reference and docker's full name for it (``latest`` when no tag is given).

        ``writes``: the operation writes a tag, so a digest alone is refused.
        """
        ref = self._reference(image_name, image_tag)
        if ref.tag is None and (writes or ref.digest is None):
            if ref.digest is not None:
                raise InvalidReferenceError(
                    f"{image_name}", "tag", "is missing: this operation writes a tag, and a "
                    "digest names content, not a tag", hint="Give a tag, e.g. repo:1.",
                )
            ref = ref.with_tag("latest")
        base = self._get_full_image_name(display_name(self.registry_host, ref.repository))
        return ref, f"{base}@{ref.digest}" if ref.tag is None else f"{base}:{ref.tag}"

    def _engine_name(self, ref: ImageReference) -> str:
        """The repository as the engine names it (``host/repo``; bare on Docker Hub)."""
        return self._get_full_image_name(display_name(self.registry_host, ref.repository))

    def _auth_config(self) -> dict[str, str] | None:
        """The engine's auth for this registry; None leaves it to the docker config."""
        return engine_auth_config(self.credentials, self.registry_host)

    def with_credentials(self, credentials: RegistryCredentials | None) -> ContainerRegistry:
        """A facade on the same registry and engine with other credentials."""
        return ContainerRegistry(self.registry_url, credentials, insecure=self.insecure,
                                 ca_bundle=self.ca_bundle, engine=self.engine,
                                 max_workers=self.max_workers)

    def is_available(self) -> bool:
        """True when a Docker engine answers (push, pull and build need one)."""
        return self.engine.is_available()

    def _simulated(self, full_name: str, action: str) -> dict[str, Any]:
        return {
            "status": "simulated",
            "image": full_name,
            "message": f"no Docker engine answers at {self.engine.base_url}, so the {action} "
                       "did not run: start dockerd or set DOCKER_HOST. Registry listings "
                       "work without it.",
        }

    # --------------------------------------------------- engine operations

    @interruptible
    def push_image(self, image_name: str, image_tag: str | None = None,
                   local_image: str | None = None, *,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Push a local image to this registry as ``image_name:image_tag``.

        ``local_image`` (any local name or id) is tagged first when given. With a
        username and password the engine logs in first. Returns ``{"status",
        "image", "digest", "size_bytes", "duration_seconds"}``: ``digest`` is the
        pushed manifest's and ``size_bytes`` the image's compressed size, the sum
        of the layer sizes in that manifest as read back from the registry (None,
        with a warning logged, only if the registry API cannot be read).
        """
        ref, full = self._named(image_name, image_tag, writes=True)  # fails before any work
        if not self.is_available():
            return self._simulated(full, "push")
        started = time.monotonic()
        repository = self._engine_name(ref)
        if local_image:
            self.engine.tag(local_image, repository, ref.tag)
        auth = self._auth_config()
        if auth is not None and "username" in auth:
            self.engine.login(self.registry_host, self.credentials)
        pushed = self.engine.push(repository, ref.tag, auth_config=auth, progress=progress,
                                  cancel=cancel)
        try:
            size: int | None = self.images.compressed_size(ref.repository, pushed["digest"])
        except RegistryError as exc:
            log.warning("pushed %s@%s but could not read its size back: %s",
                        ref.repository, pushed["digest"], exc)
            size = None
        return {"status": "success", "image": full, "digest": pushed["digest"],
                "size_bytes": size, "duration_seconds": round(time.monotonic() - started, 3)}

    @interruptible
    def pull_image(self, image_name: str, image_tag: str | None = None, *,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Pull ``image_name:image_tag`` from this registry into the engine.

        Returns ``{"status", "image", "image_id", "size_mb", "duration_seconds", "tags"}``;
        ``size_mb`` is the sum of the image's history (its uncompressed layers).
        """
        ref, full = self._named(image_name, image_tag)
        if not self.is_available():
            return self._simulated(full, "pull")
        started = time.monotonic()
        try:
            attrs = self.engine.pull(self._engine_name(ref), ref.identifier,
                                     auth_config=self._auth_config(), progress=progress,
                                     cancel=cancel)
        except EngineError as exc:  # a zstd layer dockerd 20.10 cannot unpack is named
            raise explain_unpack_failure(self.images.repository(ref.repository),
                                         ref.identifier, full, exc) from exc
        total = sum(int(e.get("Size") or 0) for e in self.engine.image_history(attrs["Id"]))
        return {"status": "success", "image": full, "image_id": attrs["Id"],
                "size_mb": size_mb(total),
                "duration_seconds": round(time.monotonic() - started, 3),
                "tags": list(attrs.get("RepoTags") or [])}

    @interruptible
    def build_and_push(self, dockerfile_path: str | os.PathLike[str], image_name: str,
                       image_tag: str | None = None, build_args: dict[str, str] | None = None,
                       no_cache: bool = False, *, progress: ProgressCallback | None = None,
                       cancel: threading.Event | None = None) -> dict[str, Any]:
        """Build an image from a Dockerfile (or a folder holding one) and push it.

        A file path means its folder is the build context and its name the
        Dockerfile; a folder means ``Dockerfile`` inside it. Builds run without
        network. Returns ``{"status", "image", "image_id", "build_duration_seconds",
        "total_duration_seconds", "push_result"}``; a failed step raises
        :class:`~registry_nb.errors.BuildError`. ``progress`` sees the build's
        events, then the push's; only the push ends with a ``"done"`` event.
        """
        ref, full = self._named(image_name, image_tag, writes=True)
        context, dockerfile = build_context(Path(dockerfile_path))
        if not self.is_available():
            return self._simulated(full, "build")
        started = time.monotonic()
        image_id = self.engine.build(str(context), dockerfile, full, build_args=build_args,
                                     no_cache=no_cache, progress=_build_stage(progress),
                                     cancel=cancel)
        built = time.monotonic()
        push_result = self.push_image(self._engine_name(ref), ref.tag, progress=progress,
                                      cancel=cancel)
        return {"status": "success", "image": full, "image_id": image_id,
                "build_duration_seconds": round(built - started, 3),
                "total_duration_seconds": round(time.monotonic() - started, 3),
                "push_result": push_result}

    # -------------------------------------------------------- local listing

    def _local_rows(self, repository: str | None, *, platform: bool = False
                    ) -> list[dict[str, Any]]:
        if not self.is_available():
            return []
        wanted = None
        if repository:
            wanted = {repository.strip("/"), self._get_full_image_name(repository)}
        return local_image_rows(self.engine, wanted, platform=platform)

    def list_images(self, repository: str | None = None) -> list[dict[str, Any]]:
        """Local images, one dict per tag: name, tag, image_id, size_mb, created, labels.

        ``repository`` matches a local name or this registry's full name for it;
        ``created`` is ISO-8601 UTC text. ``[]`` when no Docker engine answers.
        """
        return [
            {"name": r["repository"], "tag": r["tag"], "image_id": r["image_id"],
             "size_mb": r["size_mb"], "created": r["created"].isoformat() if r["created"]
             else None, "labels": r["labels"]}
            for r in self._local_rows(repository)
        ]

    def local_images_frame(self, repository: str | None = None) -> pd.DataFrame:
        """Local images as a DataFrame, one row per tag (columns in the README).

        Empty, with its columns, when no Docker engine answers.
        """
        return listings.local_images_frame(self._local_rows(repository, platform=True))

    # ----------------------------------------------------- registry listing

    def list_registry_images(self, repository: str | None = None,
                             limit: int | None = 100) -> list[dict[str, Any]]:
        """Tags in the registry: one dict per tag (name, tag, registry_url, image).

        With ``repository``, that repository's tags; without, every repository of
        the catalog (all pages), in catalog order, tags sorted. At most ``limit``
        rows (None: no limit). A catalog repository whose tags cannot be listed gives
        one row with ``tag`` None and the reason in ``error``. A registry without a
        catalog raises an error saying to pass a repository. Digest tags
        (``sha256-<hex>[.sig|.att|.sbom]``) are left out; the list's
        ``hidden_digest_tags`` says how many.
        """
        images = self.images
        rows = []
        listing = images.listing(repository, limit)
        for entry in listing:
            name = images.display_name(entry.repository)
            row: dict[str, Any] = {"name": name, "tag": entry.tag,
                                   "registry_url": self.registry_host,
                                   "image": self._get_full_image_name(name, entry.tag)}
            if entry.error is not None:
                row["error"] = entry.error
            rows.append(row)
        return listings.TagRows(rows, hidden_digest_tags=listing.hidden_digest_tags)

    def describe_image(self, image_name: str, image_tag: str | None = None, *,
                       platform: str | None = None) -> ContainerImage:
        """Read one image's manifest and config from the registry."""
        ref = self._reference(image_name, image_tag)
        resolved = self.images.resolve(ref.repository, ref.identifier, platform)
        return describe(self.images, ref.repository, ref.identifier, resolved)

    def image_config(self, image_name: str, image_tag: str | None = None, *,
                     platform: str | None = None) -> ImageConfig:
        """The image's config (for an index: the selected platform's), verified by digest."""
        ref = self._reference(image_name, image_tag)
        return self.images.resolve(ref.repository, ref.identifier, platform).config

    def registry_images_frame(self, repository: str | None = None, limit: int | None = 100,
                              *, platform: str | None = None,
                              uncompressed: bool = False) -> pd.DataFrame:
        """Registry tags as a DataFrame with manifest and config details (README columns).

        Details are fetched concurrently over one session; a tag (or catalog
        repository) whose details fail keeps its row with the reason in ``error``, and
        an entry the registry listed that is not a tag (``null``, a digest) gets a row
        without a tag that says so in ``error``.
        For an index the row describes ``platform`` (default: the host's, then
        linux/amd64) and ``platforms`` lists them all. ``uncompressed=True`` adds
        ``uncompressed_size_bytes`` from each gzip layer's trailer.
        """
        if platform is not None:
            Platform.parse(platform)  # a typo fails once, not on every index row
        listing = self.images.listing(repository, limit, junk=True)
        return listings.registry_images_frame(self.images, listing, platform=platform,
                                              uncompressed=uncompressed)

    def layers_frame(self, image_name: str, image_tag: str | None = None, *,
                     platform: str | None = None,
                     uncompressed: bool = False) -> pd.DataFrame:
        """The image's layers, in order, with the history line that made each."""
        ref = self._reference(image_name, image_tag)
        resolved = self.images.resolve(ref.repository, ref.identifier, platform)
        return listings.layers_frame(self.images, ref.repository, resolved,
                                     uncompressed=uncompressed)

    # ============================================================================
    # Daemonless transfers: copy, save, load and assemble through the registry API
    # (registry_nb.images). No Docker engine needed.
    # ============================================================================

    def _stores(self) -> AbstractContextManager[Any]:
        """``store(reference)`` for one operation: this facade's client for its own host,
        a client per other host (credentials from the docker config), closed at the end."""
        return stores_for(self.client, self.max_workers)

    @interruptible
    def copy_image(self, source: str | ImageReference, destination: str | ImageReference, *,
                   platforms: str | list[str] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None,
                   workers: int = COPY_WORKERS, referrers: bool = True) -> dict[str, Any]:
        """Copy an image between repositories or registries, without a Docker engine.

        ``source`` and ``destination`` are full references
        (``127.0.0.1:5000/demo:1``, ``ghcr.io/org/app@sha256:…``). This facade's
        credentials serve its own host; other hosts use the docker config. Blobs the
        destination has are skipped, blobs of another repository of the same registry
        are mounted, the rest stream through with their digests verified, ``workers``
        at a time. An index is copied whole, or only ``platforms`` (one platform: its
        image manifest alone; several: a new index of those). Nothing is tagged unless
        every blob arrived. Returns ``{"status": "success", "source", "destination",
        "digest", "media_type", "platforms", "blobs", "copied_blobs", "mounted_blobs",
        "existing_blobs", "bytes_copied", "size_bytes", "duration_seconds", "referrers"}``.
        With ``referrers`` (the default) signatures, SBOMs and attestations attached to
        the copied manifests (referrers API, fallback tag, cosign tags) come along;
        ``"referrers"`` counts them.
        """
        src = _parse(source)
        dst = _parse(destination)
        with self._stores() as store:
            source_store = store(src)
            plan = plan_copy(source_store, src.identifier, platforms=platforms)
            if dst.digest and plan.top.digest != dst.digest:
                raise RegistryError(
                    f"{dst} names {dst.digest}, but the copy would write {plan.top.digest}.",
                    hint="Name the destination by tag, or copy without platforms=.",
                )
            tag = dst.tag if dst.tag or dst.digest else "latest"
            target = store(dst)
            result = copy_between(source_store, target, tag=tag, plan=plan,
                                  workers=workers, progress=progress, cancel=cancel)
            carried = 0
            if referrers:
                from .images.referrers import copy_referrers
                digests = [plan.top.digest, *(c.digest for c in plan.children)]
                carried = len(copy_referrers(source_store.client, source_store.repository,
                                             target.client, target.repository, digests))
        shown = dst.with_tag(tag) if tag else dst
        return _result(result, source=str(src), destination=str(shown), referrers=carried)

    @interruptible
    def sync_repositories(self, source: ContainerRegistry | str,
                          repositories: str | re.Pattern[str] | list[str] | None = None, *,
                          tags: str | list[str] | None = None,
                          platforms: str | list[str] | None = None, referrers: bool = True,
                          progress: ProgressCallback | None = None, workers: int = 4,
                          cancel: threading.Event | None = None,
                          dry_run: bool = False) -> pd.DataFrame:
        """Mirror ``source``'s ``repositories`` (a ContainerRegistry or a URL; None: its
        catalog; ``re.compile(...)``: the catalog's names it finds) here under the same
        names, one row per tag (see images.sync); ``dry_run`` writes nothing and marks
        what a sync would copy ``missing``."""
        from .frames import SYNC_COLUMNS, build_frame
        from .images import sync

        given = source.images if isinstance(source, ContainerRegistry) else source
        with sync.source_images(given, self.images) as images:
            rows = sync.sync_repositories(images, self.images, repositories, tags=tags,
                                          platforms=platforms, referrers=referrers,
                                          progress=progress, workers=workers, cancel=cancel,
                                          dry_run=dry_run)
        return build_frame([r.as_dict() for r in rows], SYNC_COLUMNS)

    @interruptible
    def save_image(self, image_name: str, image_tag: str | None, path: str | os.PathLike[str], *,
                   platforms: str | list[str] | None = None, ref_name: str | None = None,
                   preserve_digests: bool = False,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Save ``image_name:image_tag`` from this registry into an OCI image layout folder.

        The folder is created if needed and may hold other images; the image is named
        ``ref_name`` (default ``image_tag``) in ``index.json``, with its full name as
        ``io.containerd.image.name``, so ``skopeo copy oci:PATH:TAG``, ``podman pull
        oci:PATH:TAG`` and ``umoci`` read it. A name another image already has is
        refused (:class:`~registry_nb.errors.LayoutNameConflictError`). Docker schema 2
        manifests are written with OCI media types, as skopeo does (the blobs are the
        same; the manifest digest changes). ``preserve_digests=True`` keeps Docker
        schema 2 and its digests: the layout is then readable by tag only by tools that
        accept Docker media types in an OCI layout (not skopeo 1.9, podman 4.3 or umoci
        0.4). Returns the copy's dict plus ``image``, ``path``, ``tag``,
        ``source_digest`` (the registry's) and ``note`` (a warning when Docker media
        types were kept).
        """
        ref, full = self._named(image_name, image_tag, writes=True)
        result, saved = save_to_layout(
            self.images.repository(ref.repository), ref.identifier, path, image_name=str(ref),
            ref_name=ref_name or ref.tag, preserve_digests=preserve_digests,
            platforms=platforms, progress=progress, cancel=cancel)
        return _result(result, image=full, **saved)

    @interruptible
    def load_image(self, path: str | os.PathLike[str], image_name: str,
                   image_tag: str | None = None, *,
                   source_tag: str | None = None, platforms: str | list[str] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Push an image from an OCI layout folder or a ``docker save`` tarball.

        ``source_tag`` picks the image in the layout (its ``ref.name``; for a docker
        archive also ``repo:tag``); by default the one named ``image_tag``, else the
        only one. Blobs larger than one chunk are uploaded in resumable chunks.
        """
        ref, full = self._named(image_name, image_tag, writes=True)
        store = open_local(path)
        if source_tag is None and ref.tag in store.tags():
            source_tag = ref.tag
        result = copy_between(store, self.images.repository(ref.repository),
                              reference=source_tag, tag=ref.tag, platforms=platforms,
                              progress=progress, cancel=cancel)
        return _result(result, image=full, path=str(path))

    @interruptible
    def image_from_directory(self, path: str | os.PathLike[str], image_name: str,
                             image_tag: str | None = None, *,
                             base: str | ImageReference | None = None,
                             prefix: str = "/", entrypoint: str | list[str] | None = None,
                             cmd: str | list[str] | None = None,
                             env: dict[str, str] | list[str] | None = None,
                             labels: dict[str, str] | None = None, user: str | None = None,
                             workdir: str | None = None, platform: str | None = None,
                             created: int | datetime | None = None, created_by: str | None = None,
                             compressor: str | None = None, compresslevel: int | None = None,
                             progress: ProgressCallback | None = None,
                             cancel: threading.Event | None = None) -> dict[str, Any]:
        """Make an image from a folder (one reproducible gzip layer) and push it here.

        The folder's files land under ``prefix`` in the image; ``base`` (a full
        reference, e.g. ``127.0.0.1:5000/base:1``) goes underneath, its config kept
        except for the fields given. The layer is reproducible (sorted entries, one
        fixed time — ``created``, else ``$SOURCE_DATE_EPOCH``, else 1970 — root owner,
        normalised modes): same folder, options and compression, same digest; history
        says ``created_by`` and the compression. ``compressor`` is ``"isal"`` (default
        when installed, ``compresslevel`` 1) or ``"zlib"`` (the standard library, level 6);
        see :func:`registry_nb.images.assemble.write_layer`. Base layers are mounted or
        skipped, never downloaded. Returns the copy's dict plus ``image``, ``base``,
        ``layer_digest``, ``diff_id``, ``uncompressed_size_bytes`` and ``compression``
        (of the new layer).
        """
        ref, full = self._named(image_name, image_tag, writes=True)
        base_ref = _parse(base) if base is not None else None
        with self._stores() as store, \
                tempfile.TemporaryDirectory(prefix="registry-nb-layer-") as tmp:
            base_image: Image | None = None
            if base_ref is not None:
                top = open_image(store(base_ref), base_ref.identifier)
                base_image = top if isinstance(top, Image) else top.image(platform)
            layer = write_layer(path, Path(tmp) / "layer.tar.gz", prefix=prefix, mtime=created,
                                compressor=compressor, compresslevel=compresslevel, sync=False)
            image = append_layers(base_image, [layer], entrypoint=entrypoint, cmd=cmd, env=env,
                                  labels=labels, user=user, workdir=workdir, platform=platform,
                                  created=created, created_by=created_by or DEFAULT_CREATED_BY)
            result = copy_between(image, self.images.repository(ref.repository), tag=ref.tag,
                                  progress=progress, cancel=cancel)
        return _result(result, image=full,
                       base=str(base_ref) if base_ref else None, layer_digest=layer.digest,
                       diff_id=layer.diff_id, uncompressed_size_bytes=layer.uncompressed_size,
                       compression=layer.compression)

    # ============================================================================
    # Operations: delete, retention, rate limits (registry_nb.images.delete/retention)
    # ============================================================================

    def delete_tag(self, image_name: str, image_tag: str | None = None, *,
                   force: bool = False) -> dict[str, Any]:
        """Delete a tag: alone where the registry can, else its manifest (see
        :func:`registry_nb.images.delete.delete_tag`; ``force`` takes tags sharing it)."""
        ref, _ = self._named(image_name, image_tag, writes=True)
        return delete_tag(self.client, ref.repository, ref.tag, force=force,
                          mapper=self.images.map)

    def delete_manifest(self, image_name: str, digest: str | None = None, *,
                        force: bool = False) -> dict[str, Any]:
        """Delete a manifest (named by digest, or by a tag resolved to it) and every tag
        on it; refused while an index lists it, unless ``force``."""
        ref, _ = self._named(image_name, digest)
        target = ref.digest or self.images.resolve(ref.repository, ref.identifier).top.digest
        return delete_manifest(self.client, ref.repository, target, force=force,
                               mapper=self.images.map)

    def retention_plan(self, repository: str, keep_last: int | None = None,
                       older_than_days: float | None = None,
                       keep_tags: tuple[str, ...] | list[str] = (),
                       now: datetime | None = None) -> pd.DataFrame:
        """Every tag with ``action`` (keep / delete) and a ``reason`` to check (README)."""
        from .frames import RETENTION_COLUMNS, build_frame

        rows = retention_rows(self.images, self.images.api_repository(repository),
                              keep_last=keep_last, older_than_days=older_than_days,
                              keep_tags=keep_tags, now=now)
        return build_frame(rows, RETENTION_COLUMNS)

    def apply_retention(self, plan: pd.DataFrame, dry_run: bool = True) -> pd.DataFrame:
        """Delete the plan's ``delete`` digests (checked again first); one outcome per row."""
        from .frames import RETENTION_OUTCOME_COLUMNS, build_frame

        rows = [{k: (None if v is None or v != v else v) for k, v in row.items()}
                for row in plan.to_dict("records")]
        return build_frame(apply_retention_rows(self.images, rows, dry_run=dry_run),
                           RETENTION_OUTCOME_COLUMNS)

    def rate_limit(self, image_name: str = "library/busybox") -> dict[str, Any] | None:
        """The pull limit the registry announces on a manifest HEAD (not counted by Docker
        Hub): ``{"limit", "remaining", "window_seconds", "source"}``, or None."""
        ref, _ = self._named(image_name)
        found = read_rate_limit(self.client.transport, ref.repository, ref.identifier)
        return found.as_dict() if found is not None else None

    # ============================================================================
    # Artifacts and the supply chain (registry_nb.images.artifacts / .referrers,
    # registry_nb.audits.supply_chain)
    # ============================================================================

    def push_artifact(self, paths: Any, name: str, tag: str | None = None, *,
                      artifact_type: str | None = None,
                      annotations: dict[str, str] | None = None,
                      subject: str | None = None) -> dict[str, Any]:
        """Push files or folders as an OCI artifact, as ``oras push`` does.

        ``subject`` (a tag or digest of ``name``'s repository) attaches the artifact to
        that image: through the referrers API where the registry has it, else the
        ``sha256-<hex>`` fallback tag. See :func:`registry_nb.images.artifacts.push_artifact`.
        """
        from .images.artifacts import push_artifact

        ref = self._reference(name, tag)
        subject_digest = None
        if subject is not None:
            subject_digest = subject if subject.startswith("sha256:") else \
                self.client.get_manifest(ref.repository, subject).digest
        return push_artifact(self.client, ref.repository, paths, ref.tag,
                             artifact_type=artifact_type, annotations=annotations,
                             subject=subject_digest)

    def pull_artifact(self, name: str, tag: str | None, dest: str | os.PathLike[str]
                      ) -> dict[str, Any]:
        """Write an artifact's files into ``dest``, each verified and renamed into place."""
        from .images.artifacts import pull_artifact

        ref, _ = self._named(name, tag)
        return pull_artifact(self.client, ref.repository, ref.identifier, dest)

    def referrers(self, name: str, tag_or_digest: str | None = None, *,
                  artifact_type: str | None = None) -> pd.DataFrame:
        """What is attached to an image and its platform manifests, and how it was found.

        Columns in the README (``found_by``: referrers-api, fallback-tag, cosign-tag,
        in-index).
        """
        from .audits.supply_chain import referrers_frame

        ref, _ = self._named(name, tag_or_digest)
        return referrers_frame(self.images, ref.repository, ref.identifier,
                               artifact_type=artifact_type)

    def supply_chain_frame(self, repository: str | list[str] | None = None,
                           limit: int | None = 100, *, keys: Any = None,
                           trusted_root: Any = None, trust_anchors: Any = None) -> pd.DataFrame:
        """One row per image and platform: signatures verified offline, SBOM, provenance,
        ``found_by`` and the supply-chain ``findings`` (README columns; rules in
        :func:`registry_nb.audits.supply_rules.supply_rules`)."""
        from .audits.supply_chain import supply_chain_frame

        return supply_chain_frame(self.images, self.images.listing(repository, limit),
                                  keys=keys, trusted_root=trusted_root,
                                  trust_anchors=trust_anchors)

    def _attached(self, name: str, tag: str | None) -> tuple[Any, str, list[Any]]:
        from .audits.supply_chain import image_attachments

        ref, full = self._named(name, tag)
        return ref, full, image_attachments(self.images, ref.repository, ref.identifier)

    def provenance(self, name: str, tag: str | None = None) -> Any:
        """The SLSA provenance (v0.2 or v1) attached to or embedded with the image, parsed."""
        from .audits.supply_chain import provenance_of, require

        ref, full, items = self._attached(name, tag)
        return require(provenance_of(self.images, ref.repository, items), "provenance", full)

    def sbom_frame(self, name: str, tag: str | None = None) -> pd.DataFrame:
        """Packages of the attached SBOM (SPDX, CycloneDX, syft); ``attrs["sbom_format"]``."""
        from .audits.supply_chain import require, sbom_of, sbom_packages_frame

        ref, full, items = self._attached(name, tag)
        return sbom_packages_frame(require(sbom_of(self.images, ref.repository, items),
                                           "SBOM", full))

    def export_sbom(self, name: str, tag: str | None = None, *, format: str = "cyclonedx",
                    platform: str | None = None) -> bytes:
        """An SBOM (CycloneDX 1.6 or SPDX 2.3 JSON) of the packages found in the layers."""
        from .audits.supply import export_sbom

        ref, full = self._named(name, tag)
        return export_sbom(self.packages_frame(name, tag, platform=platform), format,
                           name=full, version=ref.tag)

    # ============================================================================
    # Audits: findings per tag, storage, layer contents, wasted space, packages
    # (registry_nb.audits, imported on first use: it needs pandas).
    # ============================================================================

    def audit(self, repository: str | list[str] | None = None, limit: int | None = 100, *,
              rules_off: tuple[str, ...] | list[str] = (), reports: dict[str, Any] | None = None,
              platform: str | None = None, compare_with: tuple[str, ...] | list[str] = (),
              now: datetime | None = None) -> pd.DataFrame:
        """One row per tag with the listing's columns, audit facts and ``findings`` (rule ids).

        See :func:`registry_nb.audits.audit`; :meth:`audit_rules` explains each rule.
        """
        from . import audits

        listing = self.images.listing(repository, limit)
        others = self.images.listing(list(compare_with), None) if compare_with else None
        return audits.audit(self.images, listing, rules_off=rules_off, reports=reports,
                            platform=platform, compare_with=others, now=now)

    @staticmethod
    def audit_rules() -> pd.DataFrame:
        """The audit rules: id, severity, title, explanation, fix."""
        from . import audits

        return audits.audit_rules()

    def storage_frame(self, repository: str | list[str] | None = None,
                      limit: int | None = None) -> pd.DataFrame:
        """Unique blobs and bytes stored against the sum of image sizes, by repository."""
        from . import audits

        names = self.images.repository_names(repository, limit)
        if isinstance(repository, str):
            self.client.tags(names[0])  # a missing repository raises here, as listings do
        return audits.storage_frame(self.images, names)

    def layer_contents(self, image_name: str, image_tag: str | None = None, *,
                       platform: str | None = None) -> pd.DataFrame:
        """Every file of every layer, streamed (nothing written to disk); unsafe names flagged."""
        from . import audits

        ref = self._reference(image_name, image_tag)
        return audits.layer_contents(self.images, ref.repository, ref.identifier,
                                     platform=platform)

    def wasted_space(self, image_name: str, image_tag: str | None = None, *,
                     platform: str | None = None) -> Any:
        """Files hidden by later layers, bytes wasted and efficiency (an audits.WasteReport)."""
        from . import audits

        ref = self._reference(image_name, image_tag)
        return audits.wasted_space(self.images, ref.repository, ref.identifier,
                                   platform=platform,
                                   name=self._named(image_name, image_tag)[1])

    def packages_frame(self, image_name: str, image_tag: str | None = None, *,
                       platform: str | None = None) -> pd.DataFrame:
        """Installed packages (dpkg, apk, Python dist-info) with the layer each came from."""
        from . import audits

        ref = self._reference(image_name, image_tag)
        return audits.packages_frame(self.images, ref.repository, ref.identifier,
                                     platform=platform)

    def diff_images(self, a: str, b: str, *, platform: str | None = None,
                    shared: bool | str = "auto") -> Any:
        """Compare two images (``repo:tag`` here, or full references of any registry):
        an :class:`~registry_nb.audits.diff.ImageDiff`; shared base layers are not read
        unless ``shared`` says so (see registry_nb.audits.diff)."""
        from .audits.diff import diff_images

        with self._stores() as store:
            images = []
            for name in (a, b):
                try:
                    ref = self._reference(name)
                except InvalidReferenceError:
                    ref = _parse(name)
                images.append(resolve_image(store(ref), ref.identifier, platform).image)
            return diff_images(*images, name_a=a, name_b=b, shared=shared)


def _parse(reference: str | ImageReference) -> ImageReference:
    return reference if isinstance(reference, ImageReference) else ImageReference.parse(reference)


def _result(result: CopyResult, **fields: Any) -> dict[str, Any]:
    return {**result.as_dict(), **fields}


def _build_stage(progress: ProgressCallback | None) -> ProgressCallback | None:
    """Forward build events, the build's ``"done"`` demoted: the push that follows ends it."""
    if progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        if event.phase == "done":
            event = replace(event, phase="build", status="built")
        progress(event)

    return forward
