"""What the facade's listings return: registry and local images as rows and DataFrames.

Pure assembly over the lower layers: registry rows come from a
:class:`~registry_nb.images.listing.TagListing` and images resolved through
:class:`~registry_nb.images.listing.RegistryImages`; local rows from the engine. Column
names and dtypes live in :mod:`registry_nb.frames`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .engine import Engine
from .errors import ImageNotFoundError, RegistryError, RegistryHTTPError
from .frames import (
    LAYER_COLUMNS,
    LOCAL_IMAGE_COLUMNS,
    REGISTRY_IMAGE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)
from .images.image import ResolvedImage, gzip_isize
from .images.listing import RegistryImages, TagEntry, TagListing
from .oci import Descriptor, layer_history

if TYPE_CHECKING:  # pandas is imported by frames on first use
    import pandas as pd

__all__ = ["ContainerImage", "UNCOMPRESSED_COLUMN", "describe", "registry_images_frame",
           "layers_frame", "local_image_rows", "local_images_frame"]

log = logging.getLogger(__name__)

#: Extra frame column of ``uncompressed=True`` (gzip ISIZE; see gzip_isize).
UNCOMPRESSED_COLUMN = {"uncompressed_size_bytes": "Int64"}


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


def describe(images: RegistryImages, repository: str, reference: str,
             resolved: ResolvedImage) -> ContainerImage:
    """A :class:`ContainerImage` of one resolved image."""
    manifest, config = resolved.manifest, resolved.config
    return ContainerImage(
        name=images.display_name(repository),
        tag=None if reference.startswith("sha256:") else reference,
        registry_url=images.host,
        digest=resolved.top.digest,
        media_type=resolved.top.media_type,
        size_bytes=manifest.compressed_size,
        layer_count=len(manifest.layers),
        created=config.created,
        architecture=config.architecture,
        os=config.os,
        labels=dict(config.config.labels or {}),
        platforms=resolved.platforms,
    )


def _isize(images: RegistryImages, repository: str, layer: Descriptor) -> int | None:
    try:
        return gzip_isize(images.repository(repository), layer)
    except RegistryHTTPError:  # no Range support: unknown
        return None


def _uncompressed_total(images: RegistryImages, repository: str,
                        resolved: ResolvedImage) -> int | None:
    """Sum of the layers' gzip ISIZE; None when a layer is not gzip or cannot be read."""
    try:
        sizes = [_isize(images, repository, layer) for layer in resolved.manifest.layers]
    except RegistryError:
        log.debug("uncompressed size of %s@%s unknown", repository, resolved.top.digest,
                  exc_info=True)
        return None
    return None if any(s is None for s in sizes) else sum(s or 0 for s in sizes)


class TagRows(list):  # type: ignore[type-arg]
    """A list of tag dicts that also says how many digest tags it left out."""

    def __init__(self, rows: list[dict[str, Any]], *, hidden_digest_tags: int = 0) -> None:
        super().__init__(rows)
        self.hidden_digest_tags = hidden_digest_tags


def registry_images_frame(images: RegistryImages, listing: TagListing, *,
                          platform: str | None = None,
                          uncompressed: bool = False) -> pd.DataFrame:
    """One row per listed tag with its manifest and config details (README columns).

    Details are fetched ``images.workers`` at a time; a tag (or catalog repository)
    whose details fail keeps its row with the reason in ``error``.
    """

    def row(entry: TagEntry) -> dict[str, Any]:
        base = {"repository": images.display_name(entry.repository), "tag": entry.tag,
                "registry_url": images.host, "error": entry.error}
        if entry.tag is None:
            return base
        try:
            resolved = images.resolve(entry.repository, entry.tag, platform)
            image = describe(images, entry.repository, entry.tag, resolved)
            extra = ({"uncompressed_size_bytes": _uncompressed_total(
                images, entry.repository, resolved)} if uncompressed else {})
        except Exception as exc:  # one bad tag never sinks the listing
            log.debug("details of %s:%s failed", entry.repository, entry.tag, exc_info=True)
            return {**base, "error": f"{type(exc).__name__}: {exc}"}
        return {**base, "digest": image.digest, "media_type": image.media_type,
                "size_bytes": image.size_bytes, "size_mb": image.size_mb,
                "layer_count": image.layer_count, "created": image.created,
                "architecture": image.architecture, "os": image.os,
                "labels": image.labels, "platforms": image.platforms, **extra}

    frame = build_frame(images.map(row, list(listing)), REGISTRY_IMAGE_COLUMNS,
                        extra=UNCOMPRESSED_COLUMN if uncompressed else None)
    frame.attrs["hidden_digest_tags"] = listing.hidden_digest_tags
    return frame


def layers_frame(images: RegistryImages, repository: str, resolved: ResolvedImage, *,
                 uncompressed: bool = False) -> pd.DataFrame:
    """One row per layer of a resolved image, with the history line that made each."""
    manifest = resolved.manifest
    history = layer_history(resolved.config, manifest)
    rows = []
    for index, layer in enumerate(manifest.layers):
        entry = history[index] if index < len(history) else None
        rows.append({
            "index": index, "digest": layer.digest, "media_type": layer.media_type,
            "size_bytes": layer.size, "size_mb": size_mb(layer.size),
            "created_by": entry.created_by if entry else None,
            "created": entry.created if entry else None,
        })
    if uncompressed:
        sizes = images.map(lambda layer: _isize(images, repository, layer),
                           list(manifest.layers))
        for row, value in zip(rows, sizes, strict=True):
            row["uncompressed_size_bytes"] = value
    return build_frame(rows, LAYER_COLUMNS, extra=UNCOMPRESSED_COLUMN if uncompressed else None)


def local_image_rows(engine: Engine, wanted: set[str] | None, *,
                     platform: bool = False) -> list[dict[str, Any]]:
    """One row per local tag whose repository is in ``wanted`` (None: all), sorted.

    ``platform`` inspects each image for its architecture and os.
    """
    rows = []
    for image in engine.list_images():
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        tags = [t for t in tags if wanted is None or t.rpartition(":")[0] in wanted]
        if not tags:
            continue
        attrs: dict[str, Any] = {}
        if platform:
            try:
                attrs = engine.inspect_image(image["Id"])
            except ImageNotFoundError:  # removed while we listed
                continue
        size = int(image.get("Size") or 0)
        for repo_tag in tags:
            repo, _, tag = repo_tag.rpartition(":")
            rows.append({
                "repository": repo, "tag": tag, "image_id": image["Id"],
                "size_bytes": size, "size_mb": size_mb(size),
                "created": to_utc(image.get("Created")),
                "labels": dict(image.get("Labels") or {}),
                "architecture": attrs.get("Architecture"), "os": attrs.get("Os"),
            })
    rows.sort(key=lambda r: (r["repository"], r["tag"]))
    return rows


def local_images_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Local image rows as a DataFrame (README columns)."""
    return build_frame(rows, LOCAL_IMAGE_COLUMNS)
