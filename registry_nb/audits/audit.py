"""Per-tag audit findings and what a registry stores: the audit and the storage frame.

The facade's thin methods (``ContainerRegistry.audit``, ``storage_frame``) call the
functions here with a :class:`~registry_nb.images.listing.RegistryImages` and a
:class:`~registry_nb.images.listing.TagListing`. Everything is read through the registry
API, without a Docker engine: manifests and configs for the per-tag facts; each rule
(:mod:`.rules`) then checks the facts of a row.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from ..errors import NotFoundError, RegistryError, UnsupportedMediaTypeError
from ..frames import (
    AUDIT_COLUMNS,
    STORAGE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)
from ..images.image import ResolvedImage
from ..images.listing import ReachableBlobs, RegistryImages, TagEntry, TagListing
from .rules import (
    OCI_LABELS,
    RULE_IDS,
    SEVERITY,
    findings,
    looks_secret,
    media_problems,
    runs_as_root,
)
from .vulns import Report, severity_counts, vulnerabilities_frame

__all__ = ["audit", "storage_frame"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ gathering


@dataclass
class _Tag:
    entry: TagEntry
    error: str | None = None
    schema1: bool = False
    image: ResolvedImage | None = None

    @property
    def repo(self) -> str:
        return self.entry.repository

    @property
    def tag(self) -> str | None:
        return self.entry.tag


def _resolve(images: RegistryImages, entry: TagEntry, platform: str | None) -> _Tag:
    found = _Tag(entry, entry.error)
    if entry.tag is None:
        return found
    try:
        found.image = images.resolve(entry.repository, entry.tag, platform)
    except UnsupportedMediaTypeError as exc:
        found.error = f"{type(exc).__name__}: {exc}"
        found.schema1 = "schema 1" in str(exc)
    except Exception as exc:  # one bad tag never sinks the audit
        log.debug("audit of %s:%s failed", entry.repository, entry.tag, exc_info=True)
        found.error = f"{type(exc).__name__}: {exc}"
    return found


def _layer_owners(images: RegistryImages, tags: list[_Tag],
                  compare_with: TagListing | None) -> dict[str, set[str]]:
    """Layer digest -> the repositories (API names) whose images use it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for found in tags:
        if found.image is not None:
            for layer in found.image.manifest.layers:
                owners[layer.digest].add(found.repo)

    def layers_of(entry: TagEntry) -> tuple[str, set[str]]:
        try:
            return entry.repository, set(images.blobs(entry.repository,
                                                      entry.tag or "latest").sizes)
        except RegistryError as exc:
            log.warning("cannot compare with %s:%s: %s", entry.repository, entry.tag, exc)
            return entry.repository, set()

    for repo, digests in images.map(layers_of, list(compare_with or [])):
        for digest in digests:
            owners[digest].add(repo)
    return owners


def _report_key(images: RegistryImages, key: str) -> str:
    """``repo:tag`` or ``repo@digest`` with any ``host/`` of this registry removed."""
    text = key.strip()
    for prefix in (images.host + "/", "docker.io/"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    return images.display_name(text)


# ------------------------------------------------------------------ the audit


def audit(images: RegistryImages, listing: TagListing, *, rules_off: Iterable[str] = (),
          reports: Mapping[str, Report | pd.DataFrame] | None = None,
          platform: str | None = None, compare_with: TagListing | None = None,
          now: datetime | None = None) -> pd.DataFrame:
    """One row per listed tag: the listing's columns, the facts the rules check, the findings.

    Layers count as shared when another audited repository, or one listed in
    ``compare_with``, uses them; ``shared_bytes`` is what storing them once saves this
    image. ``reports`` maps ``repo:tag`` (or ``repo@sha256:…``) to a Trivy or Grype
    report (path, dict, JSON, or a ``vulnerabilities_frame``) and fills the ``vuln_*``
    counts (``vuln_low`` includes Grype's negligible). ``rules_off`` lists rule ids to
    skip (unknown ids raise ValueError). ``now`` fixes "today" for ``age_days``.
    """
    off = set(rules_off)
    unknown = off - RULE_IDS
    if unknown:
        raise ValueError(f"unknown audit rule id(s) {sorted(unknown)}; known: "
                         f"{sorted(RULE_IDS)}")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    tags = images.map(lambda entry: _resolve(images, entry, platform), list(listing))
    owners = _layer_owners(images, tags, compare_with)

    by_digest: dict[str, list[str]] = defaultdict(list)
    for found in tags:
        if found.image is not None:
            by_digest[found.image.top.digest].append(
                f"{images.display_name(found.repo)}:{found.tag}")
    latest_only = {repo for repo in listing.repositories() if listing.tags_of(repo) == {"latest"}}
    for repo in list(latest_only):  # the listing may have been cut by limit: ask again
        try:
            if set(images.client.tags(repo)) != {"latest"}:
                latest_only.discard(repo)
        except RegistryError:
            latest_only.discard(repo)

    vulns = _vulnerability_counts(images, reports, tags)
    rows = []
    for i, found in enumerate(tags):
        row = _facts(images, found, now, owners, by_digest, latest_only, vulns.get(i))
        fired = findings(row, off)
        row.update(findings=fired, finding_count=len(fired),
                   worst_severity=SEVERITY[fired[0]] if fired else None)
        rows.append(row)
    frame = build_frame(rows, AUDIT_COLUMNS)
    frame.attrs["hidden_digest_tags"] = listing.hidden_digest_tags
    return frame


def _vulnerability_counts(images: RegistryImages,
                          reports: Mapping[str, Report | pd.DataFrame] | None,
                          tags: list[_Tag]) -> dict[int, dict[str, int]]:
    """Row position -> severity counts, for the rows a report names."""
    if not reports:
        return {}
    keys: dict[str, int] = {}
    for i, found in enumerate(tags):
        name = images.display_name(found.repo)
        keys[f"{name}:{found.tag}"] = i
        if found.image is not None:
            keys.setdefault(f"{name}@{found.image.top.digest}", i)
    out: dict[int, dict[str, int]] = {}
    for key, report in reports.items():
        where = keys.get(_report_key(images, key))
        if where is None:
            log.warning("audit: no audited tag matches the report for %r", key)
            continue
        frame = report if isinstance(report, pd.DataFrame) else vulnerabilities_frame(report)
        out[where] = severity_counts(frame)
    return out


def _facts(images: RegistryImages, found: _Tag, now: datetime, owners: dict[str, set[str]],
           by_digest: dict[str, list[str]], latest_only: set[str],
           counts: dict[str, int] | None) -> dict[str, Any]:
    """The row of one tag: listing columns and every fact a rule checks."""
    name = images.display_name(found.repo)
    row: dict[str, Any] = {"repository": name, "tag": found.tag,
                           "registry_url": images.host, "error": found.error}
    readable_error = found.error is not None and found.tag is not None
    row["schema1"] = readable_error and found.schema1
    row["unreadable"] = readable_error and not found.schema1
    if found.tag is not None:
        row["latest_only"] = found.repo in latest_only
    if found.image is not None:
        row.update(_image_facts(images, found, name, now, owners, by_digest))
    if counts is not None:
        row.update({"vuln_critical": counts["CRITICAL"], "vuln_high": counts["HIGH"],
                    "vuln_medium": counts["MEDIUM"],
                    "vuln_low": counts["LOW"] + counts["NEGLIGIBLE"],
                    "vuln_unknown": counts["UNKNOWN"]})
    return row


def _image_facts(images: RegistryImages, found: _Tag, name: str, now: datetime,
                 owners: dict[str, set[str]], by_digest: dict[str, list[str]]
                 ) -> dict[str, Any]:
    assert found.image is not None
    top, manifest, config = found.image.top, found.image.manifest, found.image.config
    labels = dict(config.config.labels or {})
    layers = {layer.digest: layer.size for layer in manifest.layers}
    compressed = manifest.compressed_size
    largest = max(layers.values(), default=0)
    created = to_utc(config.created)
    age = None
    if created is not None and created.value > 0:  # 1970 is a reproducible build's "unset"
        age = round((now - created.to_pydatetime(warn=False)).total_seconds() / 86400, 2)
    me = f"{name}:{found.tag}"
    same = sorted(by_digest.get(top.digest, []))
    shared = {d: s for d, s in layers.items() if owners.get(d, set()) - {found.repo}}
    annotations = {**top.annotations, **manifest.annotations}
    env = config.config.env_dict
    problems = media_problems(top, manifest, config)
    return {
        "digest": top.digest, "media_type": top.media_type, "size_bytes": compressed,
        "size_mb": size_mb(compressed), "layer_count": len(manifest.layers),
        "created": created, "architecture": config.architecture, "os": config.os,
        "labels": labels, "platforms": found.image.platforms,
        "age_days": age,
        "duplicate_of": same[0] if same and same[0] != me else None,
        "duplicate_tags": [ref for ref in same if ref != me],
        "shared_layers": len(shared), "shared_bytes": sum(shared.values()),
        "shared_with": sorted({images.display_name(r) for d in shared for r in owners[d]}
                              - {name}),
        "largest_layer_bytes": largest,
        "largest_layer_share": round(largest / compressed, 4) if compressed else None,
        "missing_labels": [key for key in OCI_LABELS
                           if not (labels.get(key) or annotations.get(key))],
        "user": config.config.user or "",
        "runs_as_root": runs_as_root(config.config.user),
        "secret_env": sorted(key for key, value in env.items() if value and looks_secret(key)),
        "media_problems": [text for _, text in problems],
        "media_rules": [rule for rule, _ in problems],
    }


# ------------------------------------------------------------------ storage


def storage_frame(images: RegistryImages, repositories: list[str]) -> pd.DataFrame:
    """Bytes the registry stores against the sum of its images' sizes, by repository.

    A blob (manifest, config or layer) is stored once per registry however many
    tags and repositories use it. Per repository (API names in ``repositories``):
    ``image_bytes`` adds up each tag's blobs (manifest, config, layers; every platform
    of an index), ``stored_bytes`` counts each distinct blob once, ``saved_bytes`` is
    the difference, ``shared_bytes`` the part of ``stored_bytes`` other repositories
    use too. The last row (``is_total``) is all of them: its ``stored_bytes`` counts a
    blob once across repositories.
    """
    entries: list[TagEntry] = []
    for repo, found in zip(repositories, images.map(_tags_or_error(images), repositories),
                           strict=True):
        if isinstance(found, str):
            entries.append(TagEntry(repo, None, found))
        else:
            entries.extend(TagEntry(repo, tag) for tag in found)

    def walk(entry: TagEntry) -> tuple[ReachableBlobs | None, str | None]:
        if entry.tag is None:
            return None, entry.error
        try:
            return images.blobs(entry.repository, entry.tag), None
        except RegistryError as exc:
            return None, f"{entry.tag}: {type(exc).__name__}: {exc}"

    per_repo: dict[str, dict[str, Any]] = {
        name: {"tags": 0, "blobs": {}, "image": 0, "manifests": set(), "error": None}
        for name in repositories
    }
    owners: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = {}
    for entry, (reached, error) in zip(entries, images.map(walk, entries), strict=True):
        info = per_repo[entry.repository]
        if error is not None:
            info["error"] = info["error"] or error
        if entry.tag is not None:
            info["tags"] += 1
        if reached is None:
            continue
        info["image"] += sum(reached.sizes.values())
        info["blobs"].update(reached.sizes)
        info["manifests"].update(reached.manifests)
        for digest, size in reached.sizes.items():
            owners[digest].add(entry.repository)
            sizes[digest] = size
    rows = []
    for repo in repositories:
        info = per_repo[repo]
        stored = sum(info["blobs"].values())
        shared = sum(size for d, size in info["blobs"].items() if len(owners[d]) > 1)
        rows.append(_storage_row(images.display_name(repo), info["tags"],
                                 len(info["manifests"]), len(info["blobs"]), info["image"],
                                 stored, shared, info["error"]))
    total_shared = sum(size for d, size in sizes.items() if len(owners[d]) > 1)
    manifests = {d for info in per_repo.values() for d in info["manifests"]}
    errors = [f"{images.display_name(r)}: {i['error']}" for r, i in per_repo.items()
              if i["error"]]
    total = _storage_row("(total)", sum(i["tags"] for i in per_repo.values()), len(manifests),
                         len(sizes), sum(i["image"] for i in per_repo.values()),
                         sum(sizes.values()), total_shared,
                         f"{len(errors)} repositories with errors; first: {errors[0]}"
                         if errors else None)
    total["is_total"] = True
    rows.append(total)
    return build_frame(rows, STORAGE_COLUMNS)


def _tags_or_error(images: RegistryImages) -> Any:
    def tags(repo: str) -> list[str] | str:
        try:
            return sorted(images.client.tags(repo))
        except RegistryError as exc:
            if isinstance(exc, NotFoundError):  # in the catalog, every tag deleted
                return []
            return f"{type(exc).__name__}: {exc}"
    return tags


def _storage_row(name: str, tags: int, manifests: int, blobs: int, image: int, stored: int,
                 shared: int, error: str | None) -> dict[str, Any]:
    return {
        "repository": name, "tag_count": tags, "manifest_count": manifests,
        "blob_count": blobs, "image_bytes": image, "stored_bytes": stored,
        "saved_bytes": image - stored, "shared_bytes": shared,
        "exclusive_bytes": stored - shared, "image_mb": size_mb(image),
        "stored_mb": size_mb(stored), "saved_mb": size_mb(image - stored),
        "dedup_ratio": round(image / stored, 4) if stored else None,
        "is_total": False, "error": error,
    }
