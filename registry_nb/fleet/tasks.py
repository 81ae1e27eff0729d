"""The units of work of a fleet: plain functions of picklable arguments.

The same functions run in threads of the notebook (``Fleet(client=None)``) and as Dask
tasks on workers; a worker rebuilds each registry's facade from its
:class:`~registry_nb.fleet.spec.RegistrySpec` once and reuses it. Listings split by
repository; layer reads by unique layer digest (one read per digest, looked up in the
:class:`~registry_nb.images.layer_cache.LayerCache` first); image summaries by unique
image manifest, from the scans of its layers (no I/O).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import RegistryError
from ..images.layer_cache import LayerCache, at_index
from ..images.layers import LayerScan, read_layer
from ..images.scan import ImageScan
from ..oci import Descriptor
from .spec import RegistrySpec, facade_of

if TYPE_CHECKING:
    import pandas as pd

    from ..registry import ContainerRegistry

__all__ = ["TagPlan", "LayerRead", "ImageSummary", "repository_names", "images_rows",
           "plan_repository", "read_layer_once", "summarize_image", "audit_registry"]

def _facade(registry: ContainerRegistry | RegistrySpec) -> ContainerRegistry:
    return facade_of(registry) if isinstance(registry, RegistrySpec) else registry


@dataclass(frozen=True)
class TagPlan:
    """One tag and what reading its layers takes: the selected image and its layers."""

    host: str
    repository: str  # the API's name
    tag: str | None
    image_digest: str | None = None  # the platform image's manifest digest
    layers: tuple[tuple[str, str, int], ...] = ()  # (digest, media type, size), bottom first
    error: str | None = None


@dataclass
class LayerRead:
    """The scan of one layer, and whether this call read the blob (False: from the cache)."""

    scan: LayerScan | None
    read: bool
    error: str | None = None


@dataclass
class ImageSummary:
    """What the stacked layers of one image hold: sizes, wasted space and packages."""

    total_bytes: int | None = None
    wasted_bytes: int | None = None
    efficiency: float | None = None
    file_count: int | None = None
    uncompressed_size_bytes: int | None = None
    packages: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    read_layers: tuple[str, ...] = ()  # layers whose blob was streamed (not cached) for it


def repository_names(registry: ContainerRegistry | RegistrySpec,
                     repository: str | list[str] | None) -> list[str]:
    """API names of the repositories to read (the catalog's when ``repository`` is None)."""
    return _facade(registry).images.repository_names(repository)


def images_rows(registry: ContainerRegistry | RegistrySpec, repositories: list[str],
                platform: str | None) -> pd.DataFrame:
    """The facade's ``registry_images_frame`` of these repositories (every tag)."""
    return _facade(registry).registry_images_frame(repositories, limit=None, platform=platform)


def plan_repository(registry: ContainerRegistry | RegistrySpec, repository: str,
                    platform: str | None) -> list[TagPlan]:
    """Every tag of one repository with the layers of its (platform) image."""
    images = _facade(registry).images
    listing = images.listing(repository, None)

    def plan(entry: Any) -> TagPlan:
        try:
            manifest = images.resolve(entry.repository, entry.tag, platform).manifest
        except Exception as exc:  # one bad tag never sinks the audit
            return TagPlan(images.host, entry.repository, entry.tag,
                           error=f"{type(exc).__name__}: {exc}")
        return TagPlan(images.host, entry.repository, entry.tag, manifest.digest,
                       tuple((d.digest, d.media_type, d.size) for d in manifest.layers))

    return images.map(plan, list(listing))


def read_layer_once(registry: ContainerRegistry | RegistrySpec, repository: str,
                    layer: tuple[str, str, int], cache: LayerCache | None) -> LayerRead:
    """The scan of ``layer`` from ``cache``, else streamed from ``repository`` (verified)."""
    digest, media_type, size = layer
    if cache is not None:
        found = cache.get(digest)
        if found is not None:
            return LayerRead(found, read=False)
    store = _facade(registry).images.repository(repository)
    try:
        scan = read_layer(store.iter_blob(Descriptor(media_type, digest, size)),
                          digest=digest, media_type=media_type)
    except RegistryError as exc:
        return LayerRead(None, read=True, error=f"{type(exc).__name__}: {exc}")
    if cache is not None:
        cache.put(scan)
    return LayerRead(scan, read=True)


def summarize_image(layer_digests: list[str], reads: list[LayerRead]) -> ImageSummary:
    """Stack the layers' scans as the facade's wasted_space and packages_frame do."""
    read = tuple(d for d, r in zip(layer_digests, reads, strict=True) if r.read)
    failed = next((r.error for r in reads if r.scan is None), None)
    if failed is not None:
        return ImageSummary(error=failed, read_layers=read)
    result = ImageScan([at_index(r.scan, i)  # type: ignore[arg-type]
                        for i, r in enumerate(reads)])
    merged = result.merge()
    packages = [{"ecosystem": p.ecosystem, "name": p.name, "version": p.version,
                 "architecture": p.architecture, "layer": p.layer,
                 "layer_digest": layer_digests[p.layer], "path": p.path}
                for p in result.packages()]
    files = sum(1 for e in merged.visible.values() if e.type == "file")
    return ImageSummary(total_bytes=merged.total_bytes, wasted_bytes=merged.wasted_bytes,
                        efficiency=round(merged.efficiency, 6), file_count=files,
                        uncompressed_size_bytes=sum(s.uncompressed_bytes for s in result.layers),
                        packages=packages, read_layers=read)


def audit_registry(registry: ContainerRegistry | RegistrySpec, repositories: list[str],
                   platform: str | None, rules_off: tuple[str, ...],
                   now: datetime) -> pd.DataFrame:
    """The facade's audit of these repositories (every tag), as of ``now``."""
    return _facade(registry).audit(repositories, None, platform=platform, rules_off=rules_off,
                                   now=now)
