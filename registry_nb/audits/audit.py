"""Per-tag audit findings and what a registry stores: the audit and the storage frame.

The facade's thin methods (``ContainerRegistry.audit``, ``storage_frame``) call the
functions here. Everything is read through the registry API, without a Docker engine:
manifests and configs for the per-tag findings (each rule is in :mod:`.rules`).
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import NotFoundError, RegistryError, UnsupportedMediaTypeError
from ..frames import (
    AUDIT_COLUMNS,
    STORAGE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)
from ..oci import (
    ImageConfig,
    Index,
    Manifest,
)
from .rules import (
    LARGE_LAYER_MIN_BYTES,
    LARGE_LAYER_SHARE,
    OCI_LABELS,
    RULE_IDS,
    SEVERITY,
    SEVERITY_ORDER,
    STALE_AFTER_DAYS,
    looks_secret,
    media_problems,
    runs_as_root,
)
from .vulns import Report, severity_counts, vulnerabilities_frame

if TYPE_CHECKING:
    from ..registry import ContainerRegistry

__all__ = ["audit", "storage_frame"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ gathering


@dataclass
class _Tag:
    repo: str  # API name
    tag: str | None
    error: str | None = None
    schema1: bool = False
    top: Manifest | Index | None = None
    manifest: Manifest | None = None
    config: ImageConfig | None = None
    platforms: list[str] | None = None


def _resolve(reg: ContainerRegistry, item: tuple[str, str | None, str | None],
             platform: str | None) -> _Tag:
    repo, tag, error = item
    found = _Tag(repo, tag, error)
    if tag is None:
        return found
    try:
        found.top, found.manifest, found.config, found.platforms = reg._resolve(repo, tag,
                                                                                platform)
    except UnsupportedMediaTypeError as exc:
        found.error = f"{type(exc).__name__}: {exc}"
        found.schema1 = "schema 1" in str(exc)
    except Exception as exc:  # one bad tag never sinks the audit
        log.debug("audit of %s:%s failed", repo, tag, exc_info=True)
        found.error = f"{type(exc).__name__}: {exc}"
    return found


def _pairs(reg: ContainerRegistry, repository: str | Iterable[str] | None,
           limit: int | None) -> list[tuple[str, str | None, str | None]]:
    if repository is None or isinstance(repository, str):
        return reg._tag_pairs(repository, limit, keep_errors=True)
    out: list[tuple[str, str | None, str | None]] = []
    for name in repository:
        out.extend(reg._tag_pairs(name, None))
    return out if limit is None else out[:limit]


class _Walker:
    """Blobs reachable from tags (manifests included), with manifests cached by digest."""

    def __init__(self, reg: ContainerRegistry) -> None:
        self.reg = reg
        self._cache: dict[tuple[str, str], Manifest | Index] = {}
        self._lock = threading.Lock()

    def manifest(self, repo: str, reference: str) -> Manifest | Index:
        key = (repo, reference)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self.reg.client.get_manifest(repo, reference)
        with self._lock:
            self._cache[(repo, found.digest)] = found
        return found

    def blobs(self, repo: str, reference: str) -> tuple[str, dict[str, int]]:
        """(top digest, {digest: size}) of everything the tag needs, itself included."""
        top = self.manifest(repo, reference)
        out: dict[str, int] = {top.digest: top.size}
        pending: list[Manifest | Index] = [top]
        while pending:
            current = pending.pop()
            if isinstance(current, Index):
                for entry in current.manifests:
                    if entry.digest not in out:
                        out[entry.digest] = entry.size
                        pending.append(self.manifest(repo, entry.digest))
            else:
                out[current.config.digest] = current.config.size
                out.update((layer.digest, layer.size) for layer in current.layers)
        return top.digest, out


def _layer_owners(reg: ContainerRegistry, tags: list[_Tag],
                  compare_with: Iterable[str]) -> dict[str, set[str]]:
    """Layer digest -> the repositories (API names) whose images use it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for found in tags:
        if found.manifest is not None:
            for layer in found.manifest.layers:
                owners[layer.digest].add(found.repo)
    names = [reg._api_repository(name) for name in compare_with]
    pairs = [pair for name in names for pair in reg._tag_pairs(name, None)]
    walker = _Walker(reg)

    def layers_of(pair: tuple[str, str | None, str | None]) -> tuple[str, set[str]]:
        repo, tag, _ = pair
        try:
            _, blobs = walker.blobs(repo, tag or "latest")
        except RegistryError as exc:
            log.warning("cannot compare with %s:%s: %s", repo, tag, exc)
            return repo, set()
        return repo, set(blobs)

    for repo, digests in reg._map(layers_of, pairs):
        for digest in digests:
            owners[digest].add(repo)
    return owners


def _report_key(reg: ContainerRegistry, key: str) -> str:
    """``repo:tag`` or ``repo@digest`` with any ``host/`` of this registry removed."""
    text = key.strip()
    for prefix in (reg.registry_host + "/", "docker.io/"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if reg.is_docker_hub and text.startswith("library/"):
        text = text[len("library/"):]
    return text


# ------------------------------------------------------------------ the audit


def audit(reg: ContainerRegistry, repository: str | Iterable[str] | None = None,
          limit: int | None = 100, *, rules_off: Iterable[str] = (),
          reports: Mapping[str, Report | pd.DataFrame] | None = None,
          platform: str | None = None,
          compare_with: Iterable[str] = (), now: datetime | None = None) -> pd.DataFrame:
    """One row per tag: the listing's columns, the facts the rules check, the findings.

    ``repository`` is one repository, several, or None for the catalog (at most
    ``limit`` tags). Layers count as shared when another audited repository, or one
    of ``compare_with``, uses them; ``shared_bytes`` is what storing them once saves
    this image. ``reports`` maps ``repo:tag`` (or ``repo@sha256:…``) to a Trivy or
    Grype report (path, dict, JSON, or a ``vulnerabilities_frame``) and fills the
    ``vuln_*`` counts (``vuln_low`` includes Grype's negligible). ``rules_off``
    lists rule ids to skip (unknown ids raise ValueError). ``now`` fixes "today" for
    ``age_days``.
    """
    off = set(rules_off)
    unknown = off - RULE_IDS
    if unknown:
        raise ValueError(f"unknown audit rule id(s) {sorted(unknown)}; known: "
                         f"{sorted(RULE_IDS)}")
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    pairs = _pairs(reg, repository, limit)
    tags = reg._map(lambda item: _resolve(reg, item, platform), pairs)
    owners = _layer_owners(reg, tags, compare_with)

    by_digest: dict[str, list[str]] = defaultdict(list)
    for found in tags:
        if found.top is not None:
            by_digest[found.top.digest].append(f"{reg._display_name(found.repo)}:{found.tag}")
    tag_sets: dict[str, set[str]] = defaultdict(set)
    for found in tags:
        if found.tag is not None:
            tag_sets[found.repo].add(found.tag)
    latest_only = {repo for repo, names in tag_sets.items() if names == {"latest"}}
    for repo in list(latest_only):  # the listing may have been cut by limit: ask again
        try:
            if set(reg.client.tags(repo)) != {"latest"}:
                latest_only.discard(repo)
        except RegistryError:
            latest_only.discard(repo)

    vulns = _vulnerability_counts(reg, reports, tags)
    rows = [_row(reg, found, now, owners, by_digest, latest_only, vulns.get(i), off)
            for i, found in enumerate(tags)]
    return build_frame(rows, AUDIT_COLUMNS)


def _vulnerability_counts(reg: ContainerRegistry,
                          reports: Mapping[str, Report | pd.DataFrame] | None,
                          tags: list[_Tag]) -> dict[int, dict[str, int]]:
    """Row position -> severity counts, for the rows a report names."""
    if not reports:
        return {}
    keys: dict[str, int] = {}
    for i, found in enumerate(tags):
        name = reg._display_name(found.repo)
        keys[f"{name}:{found.tag}"] = i
        if found.top is not None:
            keys.setdefault(f"{name}@{found.top.digest}", i)
    out: dict[int, dict[str, int]] = {}
    for key, report in reports.items():
        where = keys.get(_report_key(reg, key))
        if where is None:
            log.warning("audit: no audited tag matches the report for %r", key)
            continue
        frame = report if isinstance(report, pd.DataFrame) else vulnerabilities_frame(report)
        out[where] = severity_counts(frame)
    return out


def _row(reg: ContainerRegistry, found: _Tag, now: datetime, owners: dict[str, set[str]],
         by_digest: dict[str, list[str]], latest_only: set[str],
         counts: dict[str, int] | None, off: set[str]) -> dict[str, Any]:
    name = reg._display_name(found.repo)
    row: dict[str, Any] = {"repository": name, "tag": found.tag,
                           "registry_url": reg.registry_host, "error": found.error}
    fired: list[str] = []
    if found.error is not None and found.tag is not None:
        fired.append("schema1" if found.schema1 else "unreadable")
    if found.tag is not None and found.repo in latest_only:
        row["latest_only"] = True
        fired.append("latest-only")
    elif found.tag is not None:
        row["latest_only"] = False
    top, manifest, config = found.top, found.manifest, found.config
    if top is not None and manifest is not None and config is not None:
        labels = dict(config.config.labels or {})
        layers = {layer.digest: layer.size for layer in manifest.layers}
        compressed = manifest.compressed_size
        largest = max(layers.values(), default=0)
        created = to_utc(config.created)
        age = None
        if created is not None and created.value > 0:  # 1970 is a reproducible build's "unset"
            age = round((now - created.to_pydatetime()).total_seconds() / 86400, 2)
        me = f"{name}:{found.tag}"
        same = sorted(by_digest.get(top.digest, []))
        others = [ref for ref in same if ref != me]
        shared = {d: s for d, s in layers.items() if owners.get(d, set()) - {found.repo}}
        shared_with = sorted({reg._display_name(r) for d in shared for r in owners[d]}
                             - {name})
        annotations = {**top.annotations, **manifest.annotations}
        missing = [key for key in OCI_LABELS if not (labels.get(key) or annotations.get(key))]
        env = config.config.env_dict
        secrets = sorted(key for key, value in env.items() if value and looks_secret(key))
        problems = media_problems(top, manifest, config)
        row.update({
            "digest": top.digest, "media_type": top.media_type, "size_bytes": compressed,
            "size_mb": size_mb(compressed), "layer_count": len(manifest.layers),
            "created": created, "architecture": config.architecture, "os": config.os,
            "labels": labels, "platforms": found.platforms,
            "age_days": age,
            "duplicate_of": same[0] if same and same[0] != me else None,
            "duplicate_tags": others,
            "shared_layers": len(shared), "shared_bytes": sum(shared.values()),
            "shared_with": shared_with,
            "largest_layer_bytes": largest,
            "largest_layer_share": round(largest / compressed, 4) if compressed else None,
            "missing_labels": missing,
            "user": config.config.user or "",
            "runs_as_root": runs_as_root(config.config.user),
            "secret_env": secrets,
            "media_problems": [text for _, text in problems],
        })
        fired.extend(rule for rule, _ in problems)
        if secrets:
            fired.append("secret-env")
        if row["runs_as_root"]:
            fired.append("runs-as-root")
        if missing:
            fired.append("missing-oci-labels")
        if age is not None and age > STALE_AFTER_DAYS:
            fired.append("stale-image")
        if len(layers) >= 2 and compressed >= LARGE_LAYER_MIN_BYTES and \
                largest >= LARGE_LAYER_SHARE * compressed:
            fired.append("large-layer")
        if row["duplicate_of"]:
            fired.append("duplicate-tag")
    if counts is not None:
        row.update({"vuln_critical": counts["CRITICAL"], "vuln_high": counts["HIGH"],
                    "vuln_medium": counts["MEDIUM"],
                    "vuln_low": counts["LOW"] + counts["NEGLIGIBLE"],
                    "vuln_unknown": counts["UNKNOWN"]})
        if counts["CRITICAL"] or counts["HIGH"]:
            fired.append("vulnerabilities")
    findings = sorted({rule for rule in fired if rule not in off},
                      key=lambda r: (SEVERITY_ORDER.index(SEVERITY[r]), r))
    row["findings"] = findings
    row["finding_count"] = len(findings)
    row["worst_severity"] = SEVERITY[findings[0]] if findings else None
    return row


# ------------------------------------------------------------------ storage


def storage_frame(reg: ContainerRegistry, repository: str | Iterable[str] | None = None,
                  limit: int | None = None) -> pd.DataFrame:
    """Bytes the registry stores against the sum of its images' sizes, by repository.

    A blob (manifest, config or layer) is stored once per registry however many
    tags and repositories use it. Per repository: ``image_bytes`` adds up each
    tag's blobs (manifest, config, layers; every platform of an index),
    ``stored_bytes`` counts each distinct blob once, ``saved_bytes`` is the
    difference, ``shared_bytes`` the part of ``stored_bytes`` other repositories
    use too. The last row (``is_total``) is the whole registry (or the
    repositories asked for): its ``stored_bytes`` counts a blob once across
    repositories. ``limit`` caps the catalog repositories read.
    """
    if repository is None:
        names = list(reg._catalog())
        names = names if limit is None else names[:limit]
    elif isinstance(repository, str):
        names = [reg._api_repository(repository)]
        reg.client.tags(names[0])  # a missing repository raises here, as listings do
    else:
        names = [reg._api_repository(name) for name in repository]
    pairs: list[tuple[str, str | None, str | None]] = []
    for repo, found in zip(names, reg._map(_tags_or_error(reg), names), strict=True):
        if isinstance(found, str):
            pairs.append((repo, None, found))
        else:
            pairs.extend((repo, tag, None) for tag in found)
    walker = _Walker(reg)

    def walk(pair: tuple[str, str | None, str | None]
             ) -> tuple[str, str | None, dict[str, int], str | None]:
        repo, tag, error = pair
        if tag is None:
            return repo, None, {}, error
        try:
            top, blobs = walker.blobs(repo, tag)
            return repo, top, blobs, None
        except RegistryError as exc:
            return repo, None, {}, f"{tag}: {type(exc).__name__}: {exc}"

    per_repo: dict[str, dict[str, Any]] = {
        name: {"tags": 0, "tops": set(), "blobs": {}, "image": 0, "manifests": set(),
               "error": None} for name in names
    }
    owners: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = {}
    for (repo, tag, _), (_, top, blobs, error) in zip(pairs, reg._map(walk, pairs),
                                                      strict=True):
        info = per_repo[repo]
        if error is not None:
            info["error"] = info["error"] or error
        if tag is not None:
            info["tags"] += 1
        if top is None:
            continue
        info["image"] += sum(blobs.values())
        info["blobs"].update(blobs)
        info["tops"].add(top)
        info["manifests"].update(d for d in blobs if _is_manifest(walker, repo, d))
        for digest, size in blobs.items():
            owners[digest].add(repo)
            sizes[digest] = size
    rows = []
    for repo in names:
        info = per_repo[repo]
        stored = sum(info["blobs"].values())
        shared = sum(size for d, size in info["blobs"].items() if len(owners[d]) > 1)
        rows.append(_storage_row(reg._display_name(repo), info["tags"], len(info["manifests"]),
                                 len(info["blobs"]), info["image"], stored, shared,
                                 info["error"]))
    total_image = sum(info["image"] for info in per_repo.values())
    total_stored = sum(sizes.values())
    total_shared = sum(size for d, size in sizes.items() if len(owners[d]) > 1)
    manifests = {d for info in per_repo.values() for d in info["manifests"]}
    errors = [f"{reg._display_name(r)}: {i['error']}" for r, i in per_repo.items() if i["error"]]
    total = _storage_row("(total)", sum(i["tags"] for i in per_repo.values()), len(manifests),
                         len(sizes), total_image, total_stored, total_shared,
                         f"{len(errors)} repositories with errors; first: {errors[0]}"
                         if errors else None)
    total["is_total"] = True
    rows.append(total)
    return build_frame(rows, STORAGE_COLUMNS)


def _tags_or_error(reg: ContainerRegistry) -> Any:
    def tags(repo: str) -> list[str] | str:
        try:
            return sorted(reg.client.tags(repo))
        except RegistryError as exc:
            if isinstance(exc, NotFoundError):  # in the catalog, every tag deleted
                return []
            return f"{type(exc).__name__}: {exc}"
    return tags


def _is_manifest(walker: _Walker, repo: str, digest: str) -> bool:
    return (repo, digest) in walker._cache


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


