"""``ContainerRegistry``: the facade users call from a notebook.

It joins two worlds behind one object: the local Docker engine (through
:mod:`registry_nb.engine`) for push, pull, build and local listings, and the
registry's HTTP API (through :mod:`registry_nb.distribution`) for everything a
registry can answer without an engine. Lists come back as dicts (the original
contract) or as pandas DataFrames (:mod:`registry_nb.frames`).
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .engine import Engine
from .errors import (
    AuthenticationError,
    ImageNotFoundError,
    NotFoundError,
    RegistryError,
    RegistryHTTPError,
)
from .frames import (
    LAYER_COLUMNS,
    LOCAL_IMAGE_COLUMNS,
    REGISTRY_IMAGE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)
from .images.assemble import append_layers, write_layer
from .images.copy import DEFAULT_WORKERS as COPY_WORKERS
from .images.copy import CopyResult, plan_copy
from .images.copy import copy_image as copy_between
from .images.image import Image, RegistryRepository, gzip_isize, open_image
from .images.layout import OCILayout, open_local
from .oci import ImageConfig, Index, Manifest, Platform, layer_history
from .oci.reference import ImageReference, is_docker_hub, normalize_registry
from .progress import ProgressCallback, ProgressEvent
from .remote.cache import ContentCache
from .remote.credentials import RegistryCredentials
from .remote.distribution import RegistryClient

if TYPE_CHECKING:  # pandas is imported by frames on first use
    import pandas as pd

__all__ = ["ContainerRegistry", "ContainerImage"]

#: Extra frame column of ``uncompressed=True`` (gzip ISIZE; see gzip_isize).
UNCOMPRESSED_COLUMN = {"uncompressed_size_bytes": "Int64"}

log = logging.getLogger(__name__)

#: Concurrent manifest/config fetches in a listing (one shared session; the transport
#: lowers it while the registry answers 429). 32 beat 16 and 8 by 5-15% (benchmarks/).
DEFAULT_WORKERS = 32

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class ContainerImage:
    """One image as the registry describes it: where it is and what it holds."""

    name: str
    tag: str | None
    registry_url: str
    digest: str | None = None
    media_type: str | None = None
    size_bytes: int | None = None
    layer_count: int | None = None
    created: datetime | None = None
    architecture: str | None = None
    os: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    platforms: list[str] | None = None
    vulnerabilities: Any = None

    @property
    def size_mb(self) -> float | None:
        """Compressed size in MB (10**6 bytes)."""
        return size_mb(self.size_bytes)


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
        self._client: RegistryClient | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        who = f", user={self.credentials.username!r}" if self.credentials and \
            self.credentials.username else ""
        return f"ContainerRegistry({self.registry_host!r}{who})"

    # ------------------------------------------------------------ plumbing

    @property
    def client(self) -> RegistryClient:
        """The registry API client (created on first use, shared by threads)."""
        with self._lock:
            if self._client is None:
                self._client = RegistryClient.connect(
                    self.registry_url, self.credentials, insecure=self.insecure,
                    ca_bundle=self.ca_bundle, pool_size=max(self.max_workers, 4),
                    cache=self.cache,
                )
            return self._client

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
            client, self._client = self._client, None
            engine = self._engine
        if client is not None:
            client.close()
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
        name = image_name.strip("/")
        base = name if self.is_docker_hub else f"{self.registry_host}/{name}"
        return f"{base}:{image_tag}" if image_tag else base

    def _reference(self, image_name: str, image_tag: str | None = None) -> ImageReference:
        """Parse ``image_name[:tag]`` on this registry (adds ``library/`` on Docker Hub)."""
        text = self._get_full_image_name(image_name, image_tag)
        if self.is_docker_hub:
            text = f"docker.io/{text}"
        return ImageReference.parse(text)

    def _auth_config(self) -> dict[str, str] | None:
        """The engine's auth for this registry; None leaves it to the docker config.

        Username + password (or token) are sent as such; a token alone is sent as
        a registry (Bearer) token and an identity token as docker's refresh token.
        """
        creds = self.credentials
        if creds is None:
            return None
        server = {"serveraddress": self.registry_host}
        if creds.username and (creds.password or creds.token):
            return {"username": creds.username, "password": creds.password or creds.token or "",
                    **server}
        if creds.token:
            return {"registrytoken": creds.token, **server}
        if creds.identity_token:
            return {"identitytoken": creds.identity_token, **server}
        return None

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

    def push_image(self, image_name: str, image_tag: str, local_image: str | None = None, *,
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
        ref = self._reference(image_name, image_tag)  # a bad name fails before any work
        full = self._get_full_image_name(image_name, image_tag)
        if not self.is_available():
            return self._simulated(full, "push")
        started = time.monotonic()
        if local_image:
            self.engine.tag(local_image, self._get_full_image_name(image_name), image_tag)
        auth = self._auth_config()
        if auth is not None and "username" in auth:
            self.engine.login(self.registry_host, self.credentials)
        pushed = self.engine.push(self._get_full_image_name(image_name), image_tag,
                                  auth_config=auth, progress=progress, cancel=cancel)
        return {
            "status": "success",
            "image": full,
            "digest": pushed["digest"],
            "size_bytes": self._compressed_size(ref.repository, pushed["digest"]),
            "duration_seconds": round(time.monotonic() - started, 3),
        }

    def _compressed_size(self, repository: str, digest: str) -> int | None:
        """Sum of the layer sizes of manifest ``digest`` (an index: its images' distinct layers)."""
        try:
            top = self.client.get_manifest(repository, digest)
            if isinstance(top, Manifest):
                return top.compressed_size
            layers: dict[str, int] = {}
            for entry in top.manifests:
                if entry.is_attestation:
                    continue
                child = self.client.get_manifest(repository, entry.digest)
                if isinstance(child, Manifest):
                    layers.update((layer.digest, layer.size) for layer in child.layers)
            return sum(layers.values())
        except RegistryError as exc:
            log.warning("pushed %s@%s but could not read its size back: %s",
                        repository, digest, exc)
            return None

    def pull_image(self, image_name: str, image_tag: str = "latest", *,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Pull ``image_name:image_tag`` from this registry into the engine.

        Returns ``{"status", "image", "image_id", "size_mb", "duration_seconds", "tags"}``;
        ``size_mb`` is the sum of the image's history (its uncompressed layers).
        """
        self._reference(image_name, image_tag)
        full = self._get_full_image_name(image_name, image_tag)
        if not self.is_available():
            return self._simulated(full, "pull")
        started = time.monotonic()
        attrs = self.engine.pull(self._get_full_image_name(image_name), image_tag,
                                 auth_config=self._auth_config(), progress=progress,
                                 cancel=cancel)
        history = self.engine.image_history(attrs["Id"])
        total = sum(int(entry.get("Size") or 0) for entry in history)
        return {
            "status": "success",
            "image": full,
            "image_id": attrs["Id"],
            "size_mb": size_mb(total),
            "duration_seconds": round(time.monotonic() - started, 3),
            "tags": list(attrs.get("RepoTags") or []),
        }

    def build_and_push(self, dockerfile_path: str | os.PathLike[str], image_name: str,
                       image_tag: str, build_args: dict[str, str] | None = None,
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
        self._reference(image_name, image_tag)
        full = self._get_full_image_name(image_name, image_tag)
        path = Path(dockerfile_path)
        if path.is_dir():
            context, dockerfile = path, "Dockerfile"
            if not (path / dockerfile).is_file():
                raise NotFoundError(f"no Dockerfile in {path}",
                                    hint="Pass the Dockerfile's path or a folder holding one.")
        elif path.is_file():
            context, dockerfile = path.parent, path.name
        else:
            raise NotFoundError(f"{path} does not exist",
                                hint="Pass the Dockerfile's path or a folder holding one.")
        if not self.is_available():
            return self._simulated(full, "build")
        started = time.monotonic()
        image_id = self.engine.build(str(context), dockerfile, full, build_args=build_args,
                                     no_cache=no_cache, progress=_build_stage(progress),
                                     cancel=cancel)
        built = time.monotonic()
        push_result = self.push_image(image_name, image_tag, progress=progress, cancel=cancel)
        return {
            "status": "success",
            "image": full,
            "image_id": image_id,
            "build_duration_seconds": round(built - started, 3),
            "total_duration_seconds": round(time.monotonic() - started, 3),
            "push_result": push_result,
        }

    # -------------------------------------------------------- local listing

    def _local_rows(self, repository: str | None, *, platform: bool = False
                    ) -> list[dict[str, Any]]:
        """One row per local tag (``platform``: inspect each image for arch and os)."""
        if not self.is_available():
            return []
        wanted = None
        if repository:
            wanted = {repository.strip("/"), self._get_full_image_name(repository)}
        rows = []
        for image in self.engine.list_images():
            tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
            tags = [t for t in tags if wanted is None or t.rpartition(":")[0] in wanted]
            if not tags:
                continue
            attrs: dict[str, Any] = {}
            if platform:
                try:
                    attrs = self.engine.inspect_image(image["Id"])
                except ImageNotFoundError:  # removed while we listed
                    continue
            size = int(image.get("Size") or 0)
            for repo_tag in tags:
                repo, _, tag = repo_tag.rpartition(":")
                rows.append({
                    "repository": repo,
                    "tag": tag,
                    "image_id": image["Id"],
                    "size_bytes": size,
                    "size_mb": size_mb(size),
                    "created": to_utc(image.get("Created")),
                    "labels": dict(image.get("Labels") or {}),
                    "architecture": attrs.get("Architecture"),
                    "os": attrs.get("Os"),
                })
        rows.sort(key=lambda r: (r["repository"], r["tag"]))
        return rows

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
        return build_frame(self._local_rows(repository, platform=True), LOCAL_IMAGE_COLUMNS)

    # ----------------------------------------------------- registry listing

    def _api_repository(self, name: str) -> str:
        return self._reference(name).repository

    def _catalog(self) -> Iterator[str]:
        """Repository names from the catalog (all pages), with errors that say what to do."""
        if self.is_docker_hub:
            raise RegistryError(
                "Docker Hub has no catalog to list",
                hint="Pass a repository, e.g. list_registry_images('library/busybox').",
            )
        hint = "Pass a repository to list only its tags."
        try:
            yield from self.client.catalog()
        except AuthenticationError as exc:
            raise AuthenticationError(
                f"{self.registry_host} refused to list its catalog (/v2/_catalog): {exc.message}",
                hint=f"{hint} Or use credentials allowed to list the catalog.",
            ) from exc
        except (RegistryHTTPError, NotFoundError) as exc:
            status = getattr(exc, "status", None)
            if isinstance(exc, NotFoundError) or status in (404, 405) or \
                    getattr(exc, "code", None) == "UNSUPPORTED":
                raise RegistryHTTPError(
                    f"{self.registry_host} does not offer a catalog (/v2/_catalog)",
                    status=status, code=getattr(exc, "code", None), hint=hint,
                ) from exc
            raise

    def _tag_pairs(self, repository: str | None, limit: int | None, *,
                   keep_errors: bool = False, junk: bool = False
                   ) -> list[tuple[str, str | None, str | None]]:
        """(api repository, tag, error) triples, at most ``limit``.

        With ``repository``, its tags; without, each catalog repository's tags,
        fetched concurrently a batch at a time; tags sorted per repository.
        ``keep_errors`` turns a catalog repository whose tags cannot be listed into
        one ``(repo, None, why)`` entry instead of raising; ``junk`` adds one for each
        entry the registry listed that is not a tag (``null``, a digest).
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, not {limit}")
        if limit == 0:
            return []

        def listed(repo: str) -> list[tuple[str, str | None, str | None]]:
            listing = self.client.list_tags(repo)
            out: list[tuple[str, str | None, str | None]] = [
                (repo, tag, None) for tag in sorted(listing.names)]
            if junk:
                out.extend((repo, None, f"the registry listed {entry} among the tags of "
                            f"{repo}; it is not a tag, so it was skipped")
                           for entry in listing.skipped)
            return out

        if repository:
            return listed(self._api_repository(repository))[:limit]

        def tags_of(repo: str) -> list[tuple[str, str | None, str | None]] | RegistryError:
            try:
                return listed(repo)
            except NotFoundError:  # in the catalog but without tags (all deleted)
                return []
            except RegistryError as exc:
                return exc

        out: list[tuple[str, str | None, str | None]] = []
        names = self._catalog()
        while batch := list(itertools.islice(names, self.max_workers)):
            for repo, found in zip(batch, self._map(tags_of, batch), strict=True):
                if isinstance(found, RegistryError):
                    if not keep_errors:
                        raise found
                    out.append((repo, None, f"{type(found).__name__}: {found}"))
                else:
                    out.extend(found)
                if limit is not None and len(out) >= limit:
                    return out[:limit]
        return out

    def _display_name(self, repository: str) -> str:
        if self.is_docker_hub and repository.startswith("library/"):
            return repository[len("library/"):]
        return repository

    def list_registry_images(self, repository: str | None = None,
                             limit: int | None = 100) -> list[dict[str, Any]]:
        """Tags in the registry: one dict per tag (name, tag, registry_url, image).

        With ``repository``, that repository's tags; without, every repository of
        the catalog (all pages), in catalog order, tags sorted. At most ``limit``
        rows (None: no limit). A catalog repository whose tags cannot be listed gives
        one row with ``tag`` None and the reason in ``error``. A registry without a
        catalog raises an error saying to pass a repository.
        """
        rows = []
        for repo, tag, error in self._tag_pairs(repository, limit, keep_errors=True):
            name = self._display_name(repo)
            row: dict[str, Any] = {"name": name, "tag": tag, "registry_url": self.registry_host,
                                   "image": self._get_full_image_name(name, tag)}
            if error is not None:
                row["error"] = error
            rows.append(row)
        return rows

    def _resolve(self, repository: str, reference: str,
                 platform: Platform | str | None = None
                 ) -> tuple[Manifest | Index, Manifest, ImageConfig, list[str] | None]:
        """Top manifest, the selected platform's image manifest, its config, platforms."""
        top = self.client.get_manifest(repository, reference)
        platforms = None
        manifest: Manifest | Index = top
        if isinstance(top, Index):
            platforms = [str(p) for p in top.platforms]
            chosen = top.select(platform)
            manifest = self.client.get_manifest(repository, chosen.digest)
            if isinstance(manifest, Index):
                raise RegistryError(f"{repository}@{chosen.digest} is a nested index",
                                    hint="Nested indexes are not supported yet.")
        raw = self.client.read_blob(repository, manifest.config.digest,
                                    size=manifest.config.size)
        return top, manifest, ImageConfig.from_bytes(raw), platforms

    def describe_image(self, image_name: str, image_tag: str = "latest", *,
                       platform: str | None = None) -> ContainerImage:
        """Read one image's manifest and config from the registry."""
        ref = self._reference(image_name, image_tag)
        return self._describe(ref.repository, ref.identifier, platform)

    def image_config(self, image_name: str, image_tag: str = "latest", *,
                     platform: str | None = None) -> ImageConfig:
        """The image's config (for an index: the selected platform's), verified by digest."""
        ref = self._reference(image_name, image_tag)
        return self._resolve(ref.repository, ref.identifier, platform)[2]

    def with_credentials(self, credentials: RegistryCredentials | None) -> ContainerRegistry:
        """A facade on the same registry and engine with other credentials."""
        return ContainerRegistry(self.registry_url, credentials, insecure=self.insecure,
                                 ca_bundle=self.ca_bundle, engine=self.engine,
                                 max_workers=self.max_workers)

    def _describe(self, repository: str, reference: str,
                  platform: str | None) -> ContainerImage:
        top, manifest, config, platforms = self._resolve(repository, reference, platform)
        return ContainerImage(
            name=self._display_name(repository),
            tag=None if reference.startswith("sha256:") else reference,
            registry_url=self.registry_host,
            digest=top.digest,
            media_type=top.media_type,
            size_bytes=manifest.compressed_size,
            layer_count=len(manifest.layers),
            created=config.created,
            architecture=config.architecture,
            os=config.os,
            labels=dict(config.config.labels or {}),
            platforms=platforms,
        )

    def registry_images_frame(self, repository: str | None = None, limit: int | None = 100,
                              *, platform: str | None = None,
                              uncompressed: bool = False) -> pd.DataFrame:
        """Registry tags as a DataFrame with manifest and config details (README columns).

        Details are fetched concurrently over one session; a tag (or catalog
        repository) whose details fail keeps its row with the reason in ``error``, and
        an entry the registry listed that is not a tag (``null``, a digest) gets a row
        without a tag that says so in ``error``.
        For an index the row describes ``platform`` (default: the host's, then
        linux/amd64) and ``platforms`` lists them all.
        """
        if platform is not None:
            Platform.parse(platform)  # a typo fails once, not on every index row
        pairs = self._tag_pairs(repository, limit, keep_errors=True, junk=True)

        def row(item: tuple[str, str | None, str | None]) -> dict[str, Any]:
            repo, tag, error = item
            base = {"repository": self._display_name(repo), "tag": tag,
                    "registry_url": self.registry_host, "error": error}
            if tag is None:
                return base
            try:
                image = self._describe(repo, tag, platform)
            except Exception as exc:  # one bad tag never sinks the listing
                log.debug("details of %s:%s failed", repo, tag, exc_info=True)
                return {**base, "error": f"{type(exc).__name__}: {exc}"}
            return {**base, "digest": image.digest, "media_type": image.media_type,
                    "size_bytes": image.size_bytes, "size_mb": image.size_mb,
                    "layer_count": image.layer_count, "created": image.created,
                    "architecture": image.architecture, "os": image.os,
                    "labels": image.labels, "platforms": image.platforms,
                    **(self._uncompressed_total(repo, image.digest, platform)
                       if uncompressed else {})}

        return build_frame(self._map(row, pairs), REGISTRY_IMAGE_COLUMNS,
                           extra=UNCOMPRESSED_COLUMN if uncompressed else None)

    def _map(self, func: Callable[[_T], _R], items: list[_T]) -> list[_R]:
        """``func`` over ``items`` in order, on a bounded pool when there are several."""
        if len(items) <= 1:
            return [func(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items)),
                                thread_name_prefix="registry-nb") as pool:
            return list(pool.map(func, items))

    def layers_frame(self, image_name: str, image_tag: str = "latest", *,
                     platform: str | None = None,
                     uncompressed: bool = False) -> pd.DataFrame:
        """The image's layers, in order, with the history line that made each."""
        ref = self._reference(image_name, image_tag)
        _, manifest, config, _ = self._resolve(ref.repository, ref.identifier, platform)
        history = layer_history(config, manifest)
        rows = []
        for index, layer in enumerate(manifest.layers):
            entry = history[index] if index < len(history) else None
            rows.append({
                "index": index,
                "digest": layer.digest,
                "media_type": layer.media_type,
                "size_bytes": layer.size,
                "size_mb": size_mb(layer.size),
                "created_by": entry.created_by if entry else None,
                "created": entry.created if entry else None,
            })
        if uncompressed:
            self._add_uncompressed(ref.repository, manifest.layers, rows)
        return build_frame(rows, LAYER_COLUMNS, extra=UNCOMPRESSED_COLUMN if uncompressed else None)

    # ============================================================================
    # Daemonless transfers: copy, save, load and assemble through the registry API
    # (registry_nb.image / layout / copy / assemble). No Docker engine needed.
    # ============================================================================

    def _client_for(self, registry: str, opened: dict[str, RegistryClient]) -> RegistryClient:
        """This facade's client for its own host; for another host one client per
        copy, with credentials from the docker config (``opened`` collects them)."""
        host = normalize_registry(registry)
        if host == self.registry_host:
            return self.client
        if host not in opened:
            opened[host] = RegistryClient.connect(host, None, pool_size=max(self.max_workers, 4))
        return opened[host]

    @staticmethod
    def _close_all(opened: dict[str, RegistryClient]) -> None:
        for client in opened.values():
            client.close()

    def _transfer_result(self, result: CopyResult, **fields: Any) -> dict[str, Any]:
        out = result.as_dict()
        out.update(fields)
        return out

    def copy_image(self, source: str | ImageReference, destination: str | ImageReference, *,
                   platforms: str | list[str] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None,
                   workers: int = COPY_WORKERS) -> dict[str, Any]:
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
        "existing_blobs", "bytes_copied", "size_bytes", "duration_seconds"}``.
        """
        src = source if isinstance(source, ImageReference) else ImageReference.parse(source)
        dst = destination if isinstance(destination, ImageReference) \
            else ImageReference.parse(destination)
        opened: dict[str, RegistryClient] = {}
        try:
            store = RegistryRepository(self._client_for(src.registry, opened), src.repository)
            sink = RegistryRepository(self._client_for(dst.registry, opened), dst.repository)
            plan = plan_copy(store, src.identifier, platforms=platforms)
            if dst.digest and plan.top.digest != dst.digest:
                raise RegistryError(
                    f"{dst} names {dst.digest}, but the copy would write {plan.top.digest}",
                    hint="Name the destination by tag, or copy without platforms=.",
                )
            tag = dst.tag if dst.tag or dst.digest else "latest"
            result = copy_between(store, sink, tag=tag, plan=plan, workers=workers,
                                progress=progress, cancel=cancel)
        finally:
            self._close_all(opened)
        shown = dst.with_tag(tag) if tag else dst
        return self._transfer_result(result, source=str(src), destination=str(shown))

    def save_image(self, image_name: str, image_tag: str, path: str | os.PathLike[str], *,
                   platforms: str | list[str] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Save ``image_name:image_tag`` from this registry into an OCI image layout folder.

        The folder is created if needed and may hold other images; the image is named
        ``image_tag`` in ``index.json`` (``skopeo copy oci:PATH:TAG`` reads it). Digests
        are kept (Docker schema 2 images stay schema 2). Returns the copy's dict plus
        ``image``, ``path`` and ``tag``.
        """
        ref = self._reference(image_name, image_tag)
        layout = OCILayout(path)
        result = copy_between(RegistryRepository(self.client, ref.repository), layout,
                            reference=ref.identifier, tag=image_tag, platforms=platforms,
                            progress=progress, cancel=cancel)
        return self._transfer_result(result, image=self._get_full_image_name(image_name,
                                                                              image_tag),
                                     path=str(layout.path), tag=image_tag)

    def load_image(self, path: str | os.PathLike[str], image_name: str, image_tag: str, *,
                   source_tag: str | None = None, platforms: str | list[str] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Push an image from an OCI layout folder or a ``docker save`` tarball.

        ``source_tag`` picks the image in the layout (its ``ref.name``; for a docker
        archive also ``repo:tag``); by default the one named ``image_tag``, else the
        only one. Blobs larger than one chunk are uploaded in resumable chunks.
        """
        ref = self._reference(image_name, image_tag)
        store = open_local(path)
        reference = source_tag
        if reference is None and image_tag in store.tags():
            reference = image_tag
        result = copy_between(store, RegistryRepository(self.client, ref.repository),
                            reference=reference, tag=image_tag, platforms=platforms,
                            progress=progress, cancel=cancel)
        return self._transfer_result(result, image=self._get_full_image_name(image_name,
                                                                              image_tag),
                                     path=str(path))

    def image_from_directory(self, path: str | os.PathLike[str], image_name: str,
                             image_tag: str, *, base: str | ImageReference | None = None,
                             prefix: str = "/", entrypoint: str | list[str] | None = None,
                             cmd: str | list[str] | None = None,
                             env: dict[str, str] | list[str] | None = None,
                             labels: dict[str, str] | None = None, user: str | None = None,
                             workdir: str | None = None, platform: str | None = None,
                             created: int | datetime | None = None,
                             progress: ProgressCallback | None = None,
                             cancel: threading.Event | None = None) -> dict[str, Any]:
        """Make an image from a folder (one reproducible gzip layer) and push it here.

        The folder's files land under ``prefix`` in the image; ``base`` (a full
        reference, e.g. ``127.0.0.1:5000/base:1``) goes underneath, its config kept
        except for the fields given. The layer is reproducible (sorted entries, one
        fixed time — ``created``, else ``$SOURCE_DATE_EPOCH``, else 1970 — root owner,
        normalised modes), so the same folder and options give the same digest. Base
        layers are mounted or skipped, never downloaded. Returns the copy's dict plus
        ``image``, ``base``, ``layer_digest``, ``diff_id`` and
        ``uncompressed_size_bytes`` (of the new layer).
        """
        ref = self._reference(image_name, image_tag)
        opened: dict[str, RegistryClient] = {}
        try:
            base_image: Image | None = None
            base_ref = None
            if base is not None:
                base_ref = base if isinstance(base, ImageReference) \
                    else ImageReference.parse(base)
                store = RegistryRepository(self._client_for(base_ref.registry, opened),
                                           base_ref.repository)
                top = open_image(store, base_ref.identifier)
                base_image = top if isinstance(top, Image) else top.image(platform)
            with tempfile.TemporaryDirectory(prefix="registry-nb-layer-") as tmp:
                layer = write_layer(path, Path(tmp) / "layer.tar.gz", prefix=prefix,
                                    mtime=created)
                image = append_layers(base_image, [layer], entrypoint=entrypoint, cmd=cmd,
                                      env=env, labels=labels, user=user, workdir=workdir,
                                      platform=platform, created=created)
                result = copy_between(image, RegistryRepository(self.client, ref.repository),
                                    tag=image_tag, progress=progress, cancel=cancel)
        finally:
            self._close_all(opened)
        return self._transfer_result(
            result, image=self._get_full_image_name(image_name, image_tag),
            base=str(base_ref) if base_ref else None, layer_digest=layer.digest,
            diff_id=layer.diff_id, uncompressed_size_bytes=layer.uncompressed_size,
        )

    def _isize(self, store: RegistryRepository, layer: Any) -> int | None:
        try:
            return gzip_isize(store, layer)
        except RegistryHTTPError:  # no Range support: unknown
            return None

    def _add_uncompressed(self, repository: str, layers: list[Any],
                          rows: list[dict[str, Any]]) -> None:
        """Fill ``uncompressed_size_bytes`` of layer rows from each gzip trailer (ISIZE)."""
        store = RegistryRepository(self.client, repository)
        sizes = self._map(lambda layer: self._isize(store, layer), list(layers))
        for row, value in zip(rows, sizes, strict=True):
            row["uncompressed_size_bytes"] = value

    def _uncompressed_total(self, repository: str, digest: str,
                            platform: str | None) -> dict[str, Any]:
        """``{"uncompressed_size_bytes": sum of ISIZE}``; null when a layer is not gzip
        or the figure cannot be read (the row keeps its other details)."""
        store = RegistryRepository(self.client, repository)
        try:
            top = open_image(store, digest)
            image = top if isinstance(top, Image) else top.image(platform)
            sizes = [self._isize(store, layer) for layer in image.manifest.layers]
        except RegistryError:
            log.debug("uncompressed size of %s@%s unknown", repository, digest, exc_info=True)
            return {"uncompressed_size_bytes": None}
        total = None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)
        return {"uncompressed_size_bytes": total}

    # ============================================================================
    # Audits: findings per tag, storage, layer contents, wasted space, packages.
    # Thin wrappers; the logic lives in registry_nb.audit (imported on first use).
    # ============================================================================

    def audit(self, repository: str | list[str] | None = None, limit: int | None = 100, *,
              rules_off: tuple[str, ...] | list[str] = (), reports: dict[str, Any] | None = None,
              platform: str | None = None, compare_with: tuple[str, ...] | list[str] = (),
              now: datetime | None = None) -> pd.DataFrame:
        """One row per tag with the listing's columns, audit facts and ``findings`` (rule ids).

        See :func:`registry_nb.audit.audit`; :meth:`audit_rules` explains each rule.
        """
        from . import audits as _audit

        return _audit.audit(self, repository, limit, rules_off=rules_off, reports=reports,
                            platform=platform, compare_with=compare_with, now=now)

    @staticmethod
    def audit_rules() -> pd.DataFrame:
        """The audit rules: id, severity, title, explanation, fix."""
        from . import audits as _audit

        return _audit.audit_rules()

    def storage_frame(self, repository: str | list[str] | None = None,
                      limit: int | None = None) -> pd.DataFrame:
        """Unique blobs and bytes stored against the sum of image sizes, by repository."""
        from . import audits as _audit

        return _audit.storage_frame(self, repository, limit)

    def layer_contents(self, image_name: str, image_tag: str = "latest", *,
                       platform: str | None = None) -> pd.DataFrame:
        """Every file of every layer, streamed (nothing written to disk); unsafe names flagged."""
        from . import audits as _audit

        return _audit.layer_contents(self, image_name, image_tag, platform=platform)

    def wasted_space(self, image_name: str, image_tag: str = "latest", *,
                     platform: str | None = None) -> Any:
        """Files hidden by later layers, bytes wasted and efficiency (an audit.WasteReport)."""
        from . import audits as _audit

        return _audit.wasted_space(self, image_name, image_tag, platform=platform)

    def packages_frame(self, image_name: str, image_tag: str = "latest", *,
                       platform: str | None = None) -> pd.DataFrame:
        """Installed packages (dpkg, apk, Python dist-info) with the layer each came from."""
        from . import audits as _audit

        return _audit.packages_frame(self, image_name, image_tag, platform=platform)



def _build_stage(progress: ProgressCallback | None) -> ProgressCallback | None:
    """Forward build events, the build's ``"done"`` demoted: the push that follows ends it."""
    if progress is None:
        return None

    def forward(event: ProgressEvent) -> None:
        if event.phase == "done":
            event = replace(event, phase="build", status="built")
        progress(event)

    return forward
