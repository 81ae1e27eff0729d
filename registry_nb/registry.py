"""``ContainerRegistry``: the facade users call from a notebook.

It joins two worlds behind one object: the local Docker engine (through
:mod:`registry_nb.engine`) for push, pull, build and local listings, and the
registry's HTTP API (through :mod:`registry_nb.distribution`) for everything a
registry can answer without an engine. Lists come back as dicts (the original
contract) or as pandas DataFrames (:mod:`registry_nb.frames`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .auth import RegistryCredentials
from .distribution import RegistryClient
from .engine import Engine
from .errors import NotFoundError, RegistryError, RegistryHTTPError
from .frames import (
    LAYER_COLUMNS,
    LOCAL_IMAGE_COLUMNS,
    REGISTRY_IMAGE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)
from .manifest import ImageConfig, Index, Manifest, Platform, layer_history
from .progress import ProgressCallback
from .reference import ImageReference, is_docker_hub, normalize_registry

__all__ = ["ContainerRegistry", "ContainerImage"]

log = logging.getLogger(__name__)

#: Concurrent manifest/config fetches in a listing (one shared session).
DEFAULT_WORKERS = 16


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
                 engine: Engine | None = None, max_workers: int = DEFAULT_WORKERS) -> None:
        self.registry_url = registry_url
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
        if self._client is not None:
            self._client.close()
            self._client = None

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
        creds = self.credentials
        if creds is None or not (creds.username or creds.password):
            return None
        return {"username": creds.username, "password": creds.password,
                "serveraddress": self.registry_host}

    def is_available(self) -> bool:
        """True when a Docker engine answers (push, pull and build need one)."""
        return self.engine.is_available()

    def _simulated(self, full_name: str, action: str) -> dict[str, Any]:
        return {
            "status": "simulated",
            "image": full_name,
            "message": f"no Docker engine answers, so the {action} did not run; "
                       "start dockerd or set DOCKER_HOST. Registry listings work without it.",
        }

    # --------------------------------------------------- engine operations

    def push_image(self, image_name: str, image_tag: str, local_image: str | None = None, *,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, Any]:
        """Push a local image to this registry as ``image_name:image_tag``.

        ``local_image`` (any local name or id) is tagged first when given. Returns
        ``{"status", "image", "digest", "size_bytes", "duration_seconds"}``.
        """
        self._reference(image_name, image_tag)  # a bad name fails before any work
        full = self._get_full_image_name(image_name, image_tag)
        if not self.is_available():
            return self._simulated(full, "push")
        started = time.monotonic()
        if local_image:
            self.engine.tag(local_image, self._get_full_image_name(image_name), image_tag)
        auth = self._auth_config()
        if auth is not None:
            self.engine.login(self.registry_host, self.credentials)
        pushed = self.engine.push(self._get_full_image_name(image_name), image_tag,
                                  auth_config=auth, progress=progress, cancel=cancel)
        return {
            "status": "success",
            "image": full,
            "digest": pushed["digest"],
            "size_bytes": int(pushed["size"]),
            "duration_seconds": round(time.monotonic() - started, 3),
        }

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
        Dockerfile; a folder means ``Dockerfile`` inside it.
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
                                     no_cache=no_cache, progress=progress, cancel=cancel)
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

    def _local_rows(self, repository: str | None) -> list[dict[str, Any]]:
        if not self.is_available():
            return []
        rows = []
        for image in self.engine.list_images():
            for repo_tag in image.get("RepoTags") or []:
                if repo_tag == "<none>:<none>":
                    continue
                repo, _, tag = repo_tag.rpartition(":")
                if repository and repo != repository and \
                        repo != self._get_full_image_name(repository):
                    continue
                rows.append({
                    "repository": repo,
                    "tag": tag,
                    "image_id": image["Id"],
                    "size_bytes": int(image.get("Size") or 0),
                    "size_mb": size_mb(int(image.get("Size") or 0)),
                    "created": to_utc(image.get("Created")),
                    "labels": dict(image.get("Labels") or {}),
                    "architecture": image.get("Architecture"),
                    "os": image.get("Os"),
                })
        rows.sort(key=lambda r: (r["repository"], r["tag"]))
        return rows

    def list_images(self, repository: str | None = None) -> list[dict[str, Any]]:
        """Local images, one dict per tag: name, tag, image_id, size_mb, created, labels.

        ``[]`` when no Docker engine answers.
        """
        return [
            {"name": r["repository"], "tag": r["tag"], "image_id": r["image_id"],
             "size_mb": r["size_mb"], "created": r["created"].isoformat() if r["created"]
             else None, "labels": r["labels"]}
            for r in self._local_rows(repository)
        ]

    def local_images_frame(self, repository: str | None = None) -> pd.DataFrame:
        """Local images as a DataFrame, one row per tag (columns in the README)."""
        return build_frame(self._local_rows(repository), LOCAL_IMAGE_COLUMNS)

    # ----------------------------------------------------- registry listing

    def _api_repository(self, name: str) -> str:
        return self._reference(name).repository

    def _repository_tags(self, repository: str | None,
                         limit: int | None) -> list[tuple[str, str]]:
        """(api repository, tag) pairs: one repository's tags, or the whole catalog's."""
        if repository:
            repo = self._api_repository(repository)
            return [(repo, t) for t in self.client.tags(repo, limit=limit)]
        if self.is_docker_hub:
            raise RegistryError(
                "Docker Hub has no catalog to list",
                hint="Pass a repository, e.g. list_registry_images('library/busybox').",
            )
        pairs: list[tuple[str, str]] = []
        try:
            for repo in self.client.catalog():
                for tag in self.client.tags(repo):
                    pairs.append((repo, tag))
                    if limit is not None and len(pairs) >= limit:
                        return pairs
        except RegistryHTTPError as exc:
            if exc.status in (404, 405) or exc.code == "UNSUPPORTED":
                raise RegistryError(
                    f"{self.registry_host} does not offer a catalog (/v2/_catalog)",
                    hint="Pass a repository to list its tags.",
                ) from exc
            raise
        return pairs

    def _display_name(self, repository: str) -> str:
        if self.is_docker_hub and repository.startswith("library/"):
            return repository[len("library/"):]
        return repository

    def list_registry_images(self, repository: str | None = None,
                             limit: int = 100) -> list[dict[str, Any]]:
        """Tags in the registry: one dict per tag (name, tag, registry_url, image).

        With ``repository``, that repository's tags; without, every repository of
        the catalog (all pages). At most ``limit`` rows.
        """
        return [
            {"name": self._display_name(repo), "tag": tag, "registry_url": self.registry_host,
             "image": self._get_full_image_name(self._display_name(repo), tag)}
            for repo, tag in self._repository_tags(repository, limit)
        ]

    def _resolve(self, repository: str, reference: str,
                 platform: Platform | str | None = None
                 ) -> tuple[Manifest | Index, Manifest, ImageConfig, list[str] | None]:
        """Top manifest, the selected platform's image manifest, its config, platforms."""
        top = self.client.get_manifest(repository, reference)
        platforms = None
        manifest: Manifest | Index = top
        if isinstance(top, Index):
            platforms = [str(d.platform) for d in top.manifests
                         if d.platform is not None and str(d.platform) != "unknown/unknown"]
            wanted = Platform.parse(platform) if isinstance(platform, str) else platform
            chosen = top.select(wanted)
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

    def registry_images_frame(self, repository: str | None = None, limit: int = 100, *,
                              platform: str | None = None) -> pd.DataFrame:
        """Registry tags as a DataFrame with manifest and config details (README columns).

        Details are fetched concurrently; a tag whose details fail keeps its row
        with the reason in ``error``.
        """
        pairs = self._repository_tags(repository, limit)

        def row(pair: tuple[str, str]) -> dict[str, Any]:
            repo, tag = pair
            base = {"repository": self._display_name(repo), "tag": tag,
                    "registry_url": self.registry_host}
            try:
                image = self._describe(repo, tag, platform)
            except RegistryError as exc:
                return {**base, "error": f"{type(exc).__name__}: {exc}"}
            return {**base, "digest": image.digest, "media_type": image.media_type,
                    "size_bytes": image.size_bytes, "size_mb": image.size_mb,
                    "layer_count": image.layer_count, "created": image.created,
                    "architecture": image.architecture, "os": image.os,
                    "labels": image.labels, "platforms": image.platforms}

        rows = self._map(row, pairs)
        return build_frame(rows, REGISTRY_IMAGE_COLUMNS)

    def _map(self, func: Callable[[Any], dict[str, Any]], items: list[Any]) -> list[dict[str, Any]]:
        if len(items) <= 1:
            return [func(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(items)),
                                thread_name_prefix="registry-nb") as pool:
            return list(pool.map(func, items))

    def layers_frame(self, image_name: str, image_tag: str = "latest", *,
                     platform: str | None = None) -> pd.DataFrame:
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
        return build_frame(rows, LAYER_COLUMNS)

