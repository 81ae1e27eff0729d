"""Audits of what a registry holds, what it wastes, and what is risky.

The facade's thin methods (``ContainerRegistry.audit``, ``storage_frame``,
``layer_contents``, ``wasted_space``, ``packages_frame``) call the functions
here. Everything is read through the registry API, without a Docker engine:
manifests and configs for the per-tag findings, and layer blobs, streamed and
never written to disk (:mod:`registry_nb.layers`), for file listings, wasted
space and packages.

Each finding is a rule with an id (:func:`audit_rules` lists them with their
severity, what they mean and how to fix them); ``rules_off`` turns rules off by id.
"""

from __future__ import annotations

import logging
import re
import stat
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd

from .errors import NotFoundError, RegistryError, UnsupportedMediaTypeError
from .frames import (
    AUDIT_COLUMNS,
    AUDIT_RULE_COLUMNS,
    LAYER_FILE_COLUMNS,
    LAYER_SCAN_COLUMNS,
    PACKAGE_COLUMNS,
    STORAGE_COLUMNS,
    WASTED_FILE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)
from .layers import ImageScan, scan_image
from .manifest import (
    LAYER_MEDIA_TYPES,
    OCI_LAYER,
    OCI_LAYER_NONDISTRIBUTABLE,
    ImageConfig,
    Index,
    Manifest,
)
from .vulns import Report, severity_counts, vulnerabilities_frame

if TYPE_CHECKING:
    from .registry import ContainerRegistry

__all__ = [
    "Rule",
    "RULES",
    "SEVERITY_ORDER",
    "OCI_LABELS",
    "STALE_AFTER_DAYS",
    "LARGE_LAYER_SHARE",
    "LARGE_LAYER_MIN_BYTES",
    "WasteReport",
    "audit",
    "audit_rules",
    "storage_frame",
    "layer_contents",
    "wasted_space",
    "packages_frame",
    "scan",
    "looks_secret",
    "runs_as_root",
]

log = logging.getLogger(__name__)

#: Severities from worst to least.
SEVERITY_ORDER = ("high", "medium", "low", "info")
#: The OCI annotation keys an image should carry as labels (or manifest annotations).
OCI_LABELS = (
    "org.opencontainers.image.source",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
)
#: ``stale-image`` fires for images built longer ago than this.
STALE_AFTER_DAYS = 365
#: ``large-layer`` fires when one layer holds at least this share of an image...
LARGE_LAYER_SHARE = 0.8
#: ...of at least two layers and this many (compressed) bytes.
LARGE_LAYER_MIN_BYTES = 1_000_000


@dataclass(frozen=True)
class Rule:
    """One audit rule: what it flags, how bad that is, and what to do."""

    id: str
    severity: str
    title: str
    explanation: str
    fix: str


RULES: tuple[Rule, ...] = (
    Rule("schema1", "high", "Docker schema 1 manifest",
         "Schema 1 manifests are deprecated, unsigned in practice, and refused by current "
         "Docker and containerd releases.",
         "Pull the image with an old docker and push it again with a current one (schema 2 or "
         "OCI), or rebuild it."),
    Rule("secret-env", "high", "Secret-looking environment variable",
         "The config sets environment variables whose names look like credentials "
         "(PASSWORD, PASSWD, SECRET, TOKEN, KEY, CREDENTIAL, PASSPHRASE) to a non-empty value. "
         "Anyone who can pull the image can read them. Names ending in _FILE/_PATH/_DIR "
         "(pointers to secrets) and public-key names (GPG, PGP, PUBLIC, KEYRING) are not "
         "reported; only names are shown, never values.",
         "Remove the ENV line, rotate the secret, and pass it at run time (a mounted secret, "
         "--env-file, or a build secret)."),
    Rule("vulnerabilities", "high", "Critical or high vulnerabilities",
         "The vulnerability report given for this tag lists CRITICAL or HIGH matches.",
         "Rebuild on a patched base image, upgrade the packages with fixed versions."),
    Rule("layer-count-mismatch", "high", "Layers and diff_ids disagree",
         "The config's rootfs.diff_ids does not have one entry per manifest layer; engines "
         "refuse to unpack the image.",
         "Rebuild and push the image with a standard tool."),
    Rule("unreadable", "medium", "Tag cannot be read",
         "The manifest or config of this tag could not be fetched or parsed (a missing or "
         "corrupt blob, a malformed document); pulls of it fail. The error column says why.",
         "Re-push the image, or delete the tag."),
    Rule("runs-as-root", "medium", "Runs as root",
         "The config's User is empty, 0 or root, so containers run as root unless the runtime "
         "says otherwise; a breakout then starts with root's privileges.",
         "Add a USER instruction with an unprivileged user (e.g. USER 65532:65532)."),
    Rule("mixed-media-types", "medium", "Docker and OCI media types mixed",
         "The manifest is of one family (Docker v2 or OCI) while its config, layers or "
         "(for an index) child manifests are of the other; strict clients reject such images.",
         "Push with one tool end to end (buildx --output oci-mediatypes=true, or skopeo copy "
         "--format oci / v2s2)."),
    Rule("unknown-layer-type", "medium", "Unknown layer media type",
         "A layer's media type is not an image layer type (tar, tar+gzip, tar+zstd); engines "
         "cannot unpack it. It may be an artifact pushed under an image tag.",
         "Push artifacts to their own repository, or rebuild the image."),
    Rule("missing-oci-labels", "low", "OCI labels missing",
         "Labels (or manifest annotations) org.opencontainers.image.source, .version, "
         ".revision and .created tell where an image comes from; scanners and registries "
         "link to the source with them.",
         "Add LABEL org.opencontainers.image.source=... (docker/metadata-action writes all "
         "four)."),
    Rule("latest-only", "low", "Only tag is latest",
         "The repository's only tag is latest, so nothing pins a version: every push moves it "
         "and rollbacks have nothing to go back to.",
         "Tag each push with a version or commit too (1.4.2, sha-abc1234)."),
    Rule("stale-image", "low", "Old image",
         f"The image was built more than {STALE_AFTER_DAYS} days ago, so its packages miss a "
         "year of security fixes. Images without a creation time, or dated 1970-01-01 (what "
         "reproducible builds write), have no age and are not reported.",
         "Rebuild regularly on a current base image."),
    Rule("uncompressed-layers", "low", "Uncompressed layers",
         "Some layers are plain tar, so pulls move several times the bytes they need to.",
         "Push with gzip or zstd layers (skopeo copy --dest-compress, or a current builder)."),
    Rule("large-layer", "low", "One layer holds most of the image",
         f"One layer is at least {LARGE_LAYER_SHARE:.0%} of an image of several layers and at "
         f"least {LARGE_LAYER_MIN_BYTES / 1e6:g} MB: any change to it re-pushes and re-pulls "
         "nearly everything.",
         "Split the build so slow-changing parts (dependencies) sit in their own lower layers."),
    Rule("zstd-layers", "info", "zstd layers",
         "Some layers are zstd-compressed; Docker before 23 and containerd before 1.5 cannot "
         "pull them.",
         "Publish a gzip variant too if old clients must pull it."),
    Rule("duplicate-tag", "info", "Same image as another tag",
         "This tag points at the same manifest digest as an earlier tag (duplicate_of); "
         "that is normal for latest and version tags, but stale copies pile up.",
         "Nothing, if intended; otherwise delete the extra tag."),
)
_RULE_IDS = {rule.id for rule in RULES}
_SEVERITY = {rule.id: rule.severity for rule in RULES}


def audit_rules() -> pd.DataFrame:
    """The audit rules: ``id``, ``severity``, ``title``, ``explanation``, ``fix``."""
    return build_frame([vars(rule) for rule in RULES], AUDIT_RULE_COLUMNS)


# ------------------------------------------------------------------ small checks

_SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PASSPHRASE")
_NOT_SECRET_WORDS = {"GPG", "PGP", "PUBLIC", "KEYRING", "KEYSERVER", "FINGERPRINT"}
_POINTER_SUFFIXES = ("_FILE", "_PATH", "_DIR", "_FILENAME", "_LOCATION")


def looks_secret(name: str) -> bool:
    """True when an environment variable's name looks like it holds a credential."""
    upper = name.upper()
    if upper.endswith(_POINTER_SUFFIXES):
        return False
    words = [w for w in re.split(r"[^A-Z0-9]+", upper) if w]
    if _NOT_SECRET_WORDS.intersection(words):
        return False
    for word in words:
        for secret in _SECRET_WORDS:
            if word == secret or word == secret + "S" or word.endswith(secret):
                return True
    return False


def runs_as_root(user: str | None) -> bool:
    """True for an empty ``User``, ``0`` or ``root`` (with any group)."""
    name = (user or "").strip().split(":", 1)[0]
    return name in ("", "0", "root")


def _family(media_type: str | None) -> str | None:
    if not media_type:
        return None
    if media_type.startswith("application/vnd.docker."):
        return "docker"
    if media_type.startswith("application/vnd.oci."):
        return "oci"
    return None


def _media_problems(top: Manifest | Index, manifest: Manifest,
                    config: ImageConfig) -> list[tuple[str, str]]:
    """(rule id, description) for each media type or schema problem of one image."""
    out: list[tuple[str, str]] = []
    family = _family(manifest.media_type)
    others = {_family(manifest.config.media_type)} | {_family(d.media_type)
                                                      for d in manifest.layers}
    others.discard(None)
    if family and others - {family}:
        kinds = sorted({d.media_type for d in [manifest.config, *manifest.layers]
                        if _family(d.media_type) not in (None, family)})
        out.append(("mixed-media-types",
                    f"{'Docker v2' if family == 'docker' else 'OCI'} manifest with "
                    + ", ".join(kinds)))
    if isinstance(top, Index):
        parent = _family(top.media_type)
        children = sorted({d.media_type for d in top.manifests
                           if _family(d.media_type) not in (None, parent)})
        if parent and children:
            out.append(("mixed-media-types",
                        f"{'Docker manifest list' if parent == 'docker' else 'OCI index'} "
                        f"holding {', '.join(children)}"))
    plain = [d for d in manifest.layers if d.media_type in (OCI_LAYER, OCI_LAYER_NONDISTRIBUTABLE)]
    if plain:
        out.append(("uncompressed-layers", f"{len(plain)} uncompressed tar layer(s)"))
    zstd = [d for d in manifest.layers if d.media_type.endswith("+zstd")]
    if zstd:
        out.append(("zstd-layers", f"{len(zstd)} zstd layer(s)"))
    unknown = sorted({d.media_type for d in manifest.layers
                      if d.media_type not in LAYER_MEDIA_TYPES})
    if unknown:
        out.append(("unknown-layer-type", "layer media type " + ", ".join(unknown)))
    if len(config.diff_ids) != len(manifest.layers):
        out.append(("layer-count-mismatch",
                    f"{len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids"))
    return out


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
    unknown = off - _RULE_IDS
    if unknown:
        raise ValueError(f"unknown audit rule id(s) {sorted(unknown)}; known: "
                         f"{sorted(_RULE_IDS)}")
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
        problems = _media_problems(top, manifest, config)
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
                      key=lambda r: (SEVERITY_ORDER.index(_SEVERITY[r]), r))
    row["findings"] = findings
    row["finding_count"] = len(findings)
    row["worst_severity"] = _SEVERITY[findings[0]] if findings else None
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


# ------------------------------------------------------------------ layer contents

#: Image scans kept per facade (the last few images read), keyed by manifest digest.
SCAN_CACHE_SIZE = 4
_scans: weakref.WeakKeyDictionary[Any, OrderedDict[tuple[str, str], ImageScan]] = \
    weakref.WeakKeyDictionary()
_scans_lock = threading.Lock()


def scan(reg: ContainerRegistry, image_name: str, image_tag: str = "latest", *,
         platform: str | None = None) -> tuple[Manifest, ImageScan]:
    """Stream every layer of an image once and keep the result for the next few calls.

    Each blob's digest is verified as it streams (a mismatch raises
    :class:`~registry_nb.errors.DigestMismatchError` and nothing is kept).
    """
    ref = reg._reference(image_name, image_tag)
    _, manifest, _, _ = reg._resolve(ref.repository, ref.identifier, platform)
    key = (ref.repository, manifest.digest)
    with _scans_lock:
        cache = _scans.setdefault(reg, OrderedDict())
        if key in cache:
            cache.move_to_end(key)
            return manifest, cache[key]
    client = reg.client
    result = scan_image(manifest.layers,
                        lambda d: client.iter_blob(ref.repository, d.digest, size=d.size))
    with _scans_lock:
        cache[key] = result
        while len(cache) > SCAN_CACHE_SIZE:
            cache.popitem(last=False)
    return manifest, result


def layer_contents(reg: ContainerRegistry, image_name: str, image_tag: str = "latest", *,
                   platform: str | None = None) -> pd.DataFrame:
    """Every tar entry of every layer, in order, read from the stream (nothing extracted).

    Unsafe names (absolute, climbing out with ``..``, links escaping the root) are
    listed as written with ``unsafe`` set and the reason in ``flags``.
    """
    manifest, result = scan(reg, image_name, image_tag, platform=platform)
    rows = []
    for entry in result.entries:
        rows.append({
            "layer": entry.layer, "layer_digest": manifest.layers[entry.layer].digest,
            "path": entry.path, "raw_name": entry.raw_name, "type": entry.type,
            "size_bytes": entry.size, "mode": entry.mode,
            "permissions": _permissions(entry.type, entry.mode), "uid": entry.uid,
            "gid": entry.gid, "mtime": entry.mtime, "link_target": entry.link_target,
            "deletes": entry.deletes, "unsafe": entry.unsafe, "flags": list(entry.flags),
        })
    return build_frame(rows, LAYER_FILE_COLUMNS)


_TYPE_BITS = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "char": stat.S_IFCHR,
              "block": stat.S_IFBLK, "fifo": stat.S_IFIFO}


def _permissions(kind: str, mode: int) -> str:
    return stat.filemode(_TYPE_BITS.get(kind, stat.S_IFREG) | (mode & 0o7777))


@dataclass
class WasteReport:
    """Space an image wastes on file versions its upper layers hide (dive's efficiency).

    ``efficiency`` is ``1 - wasted_bytes / total_bytes`` where ``total_bytes`` adds
    up every file version in every layer; ``files`` lists each hidden version
    (``how``: overwritten, deleted, opaque, replaced) biggest first; ``layers``
    has one row per layer (``added_bytes`` of files it brings, ``wasted_bytes`` of
    those later hidden, ``removes_bytes`` it hides from lower layers).
    """

    image: str
    total_bytes: int
    wasted_bytes: int
    efficiency: float
    files: pd.DataFrame
    layers: pd.DataFrame

    @property
    def wasted_mb(self) -> float | None:
        """Wasted bytes in MB."""
        return size_mb(self.wasted_bytes)

    def summary(self) -> dict[str, Any]:
        """The figures without the frames."""
        return {"image": self.image, "total_bytes": self.total_bytes,
                "wasted_bytes": self.wasted_bytes, "efficiency": self.efficiency,
                "wasted_files": len(self.files)}

    def __repr__(self) -> str:
        return (f"WasteReport({self.image!r}, efficiency={self.efficiency:.2%}, "
                f"wasted {self.wasted_bytes} of {self.total_bytes} bytes in "
                f"{len(self.files)} file versions)")

    def _repr_html_(self) -> str:
        head = (f"<p><b>{self.image}</b>: efficiency {self.efficiency:.2%}, "
                f"{self.wasted_bytes:,} of {self.total_bytes:,} bytes wasted</p>")
        return head + self.files.head(50).to_html(index=False)


def wasted_space(reg: ContainerRegistry, image_name: str, image_tag: str = "latest", *,
                 platform: str | None = None) -> WasteReport:
    """Files overwritten or deleted by later layers, the bytes wasted and the efficiency."""
    manifest, result = scan(reg, image_name, image_tag, platform=platform)
    merged = result.merge()
    wasted = sorted(merged.wasted, key=lambda w: (-w.size, w.path, w.layer))
    files = build_frame(
        [{"path": w.path, "type": w.type, "size_bytes": w.size, "size_mb": size_mb(w.size),
          "layer": w.layer, "removed_in": w.removed_in, "how": w.how} for w in wasted],
        WASTED_FILE_COLUMNS)
    layers = []
    for layer in result.layers:
        added = sum(e.size for e in layer.entries
                    if e.in_root and e.type not in ("dir", "whiteout", "opaque", "whiteout-meta"))
        layers.append({
            "index": layer.index, "digest": layer.digest, "media_type": layer.media_type,
            "compression": layer.compression, "size_bytes": layer.compressed_bytes,
            "uncompressed_size_bytes": layer.uncompressed_bytes, "entries": len(layer.entries),
            "added_bytes": added,
            "wasted_bytes": sum(w.size for w in merged.wasted if w.layer == layer.index),
            "removes_bytes": sum(w.size for w in merged.wasted if w.removed_in == layer.index),
            "notes": list(layer.notes),
        })
    return WasteReport(
        image=reg._get_full_image_name(image_name, image_tag),
        total_bytes=merged.total_bytes, wasted_bytes=merged.wasted_bytes,
        efficiency=round(merged.efficiency, 6), files=files,
        layers=build_frame(layers, LAYER_SCAN_COLUMNS),
    )


def packages_frame(reg: ContainerRegistry, image_name: str, image_tag: str = "latest", *,
                   platform: str | None = None) -> pd.DataFrame:
    """Installed packages (dpkg, apk, Python dist-info) with the layer each came from."""
    manifest, result = scan(reg, image_name, image_tag, platform=platform)
    return build_frame(
        [{"ecosystem": p.ecosystem, "name": p.name, "version": p.version,
          "architecture": p.architecture, "layer": p.layer,
          "layer_digest": manifest.layers[p.layer].digest, "path": p.path}
         for p in result.packages()],
        PACKAGE_COLUMNS)
