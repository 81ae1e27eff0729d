"""The audit rules: what each flags, how bad it is, what to do; and the checks they use.

Rules are data (:data:`RULES`); the checks of single facts (:func:`looks_secret`,
:func:`runs_as_root`, :func:`media_problems`) are pure functions over OCI data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from ..frames import (
    AUDIT_RULE_COLUMNS,
    build_frame,
)
from ..oci import (
    LAYER_MEDIA_TYPES,
    OCI_LAYER,
    OCI_LAYER_NONDISTRIBUTABLE,
    ImageConfig,
    Index,
    Manifest,
)

__all__ = ["Rule", "RULES", "RULE_IDS", "SEVERITY", "SEVERITY_ORDER", "OCI_LABELS",
           "STALE_AFTER_DAYS", "LARGE_LAYER_SHARE", "LARGE_LAYER_MIN_BYTES", "audit_rules",
           "looks_secret", "runs_as_root", "media_problems", "findings"]

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
    #: Whether the rule fires for one audit row's facts (see :func:`findings`).
    check: Callable[[Mapping[str, Any]], bool] = field(default=lambda facts: False,
                                                       repr=False, compare=False)


def _media(rule_id: str) -> Callable[[Mapping[str, Any]], bool]:
    """A check that fires when :func:`media_problems` reported ``rule_id``."""
    return lambda facts: rule_id in facts.get("media_rules", ())


def _large_layer(facts: Mapping[str, Any]) -> bool:
    size = facts.get("size_bytes") or 0
    return ((facts.get("layer_count") or 0) >= 2 and size >= LARGE_LAYER_MIN_BYTES
            and (facts.get("largest_layer_bytes") or 0) >= LARGE_LAYER_SHARE * size)


RULES: tuple[Rule, ...] = (
    Rule("schema1", "high", "Docker schema 1 manifest",
         "Schema 1 manifests are deprecated, unsigned in practice, and refused by current "
         "Docker and containerd releases.",
         "Pull the image with an old docker and push it again with a current one (schema 2 or "
         "OCI), or rebuild it.",
         check=lambda f: f.get('schema1', False)),
    Rule("secret-env", "high", "Secret-looking environment variable",
         "The config sets environment variables whose names look like credentials "
         "(PASSWORD, PASSWD, SECRET, TOKEN, KEY, CREDENTIAL, PASSPHRASE) to a non-empty value. "
         "Anyone who can pull the image can read them. Names ending in _FILE/_PATH/_DIR "
         "(pointers to secrets) and public-key names (GPG, PGP, PUBLIC, KEYRING) are not "
         "reported; only names are shown, never values.",
         "Remove the ENV line, rotate the secret, and pass it at run time (a mounted secret, "
         "--env-file, or a build secret).",
         check=lambda f: bool(f.get('secret_env'))),
    Rule("vulnerabilities", "high", "Critical or high vulnerabilities",
         "The vulnerability report given for this tag lists CRITICAL or HIGH matches.",
         "Rebuild on a patched base image, upgrade the packages with fixed versions.",
         check=lambda f: bool(f.get('vuln_critical') or f.get('vuln_high'))),
    Rule("layer-count-mismatch", "high", "Layers and diff_ids disagree",
         "The config's rootfs.diff_ids does not have one entry per manifest layer; engines "
         "refuse to unpack the image.",
         "Rebuild and push the image with a standard tool.",
         check=_media('layer-count-mismatch')),
    Rule("unreadable", "medium", "Tag cannot be read",
         "The manifest or config of this tag could not be fetched or parsed (a missing or "
         "corrupt blob, a malformed document); pulls of it fail. The error column says why.",
         "Re-push the image, or delete the tag.",
         check=lambda f: f.get('unreadable', False)),
    Rule("runs-as-root", "medium", "Runs as root",
         "The config's User is empty, 0 or root, so containers run as root unless the runtime "
         "says otherwise; a breakout then starts with root's privileges.",
         "Add a USER instruction with an unprivileged user (e.g. USER 65532:65532).",
         check=lambda f: f.get('runs_as_root') is True),
    Rule("mixed-media-types", "medium", "Docker and OCI media types mixed",
         "The manifest is of one family (Docker v2 or OCI) while its config, layers or "
         "(for an index) child manifests are of the other; strict clients reject such images.",
         "Push with one tool end to end (buildx --output oci-mediatypes=true, or skopeo copy "
         "--format oci / v2s2).",
         check=_media('mixed-media-types')),
    Rule("unknown-layer-type", "medium", "Unknown layer media type",
         "A layer's media type is not an image layer type (tar, tar+gzip, tar+zstd); engines "
         "cannot unpack it. It may be an artifact pushed under an image tag.",
         "Push artifacts to their own repository, or rebuild the image.",
         check=_media('unknown-layer-type')),
    Rule("missing-oci-labels", "low", "OCI labels missing",
         "Labels (or manifest annotations) org.opencontainers.image.source, .version, "
         ".revision and .created tell where an image comes from; scanners and registries "
         "link to the source with them.",
         "Add LABEL org.opencontainers.image.source=... (docker/metadata-action writes all "
         "four).",
         check=lambda f: bool(f.get('missing_labels'))),
    Rule("latest-only", "low", "Only tag is latest",
         "The repository's only tag is latest, so nothing pins a version: every push moves it "
         "and rollbacks have nothing to go back to.",
         "Tag each push with a version or commit too (1.4.2, sha-abc1234).",
         check=lambda f: f.get('latest_only') is True),
    Rule("stale-image", "low", "Old image",
         f"The image was built more than {STALE_AFTER_DAYS} days ago, so its packages miss a "
         "year of security fixes. Images without a creation time, or dated 1970-01-01 (what "
         "reproducible builds write), have no age and are not reported.",
         "Rebuild regularly on a current base image.",
         check=lambda f: (f.get('age_days') or 0) > STALE_AFTER_DAYS),
    Rule("uncompressed-layers", "low", "Uncompressed layers",
         "Some layers are plain tar, so pulls move several times the bytes they need to.",
         "Push with gzip or zstd layers (skopeo copy --dest-compress, or a current builder).",
         check=_media('uncompressed-layers')),
    Rule("large-layer", "low", "One layer holds most of the image",
         f"One layer is at least {LARGE_LAYER_SHARE:.0%} of an image of several layers and at "
         f"least {LARGE_LAYER_MIN_BYTES / 1e6:g} MB: any change to it re-pushes and re-pulls "
         "nearly everything.",
         "Split the build so slow-changing parts (dependencies) sit in their own lower layers.",
         check=_large_layer),
    Rule("zstd-layers", "info", "zstd layers",
         "Some layers are zstd-compressed; Docker before 23 and containerd before 1.5 cannot "
         "pull them.",
         "Publish a gzip variant too if old clients must pull it.",
         check=_media('zstd-layers')),
    Rule("duplicate-tag", "info", "Same image as another tag",
         "This tag points at the same manifest digest as an earlier tag (duplicate_of); "
         "that is normal for latest and version tags, but stale copies pile up.",
         "Nothing, if intended; otherwise delete the extra tag.",
         check=lambda f: bool(f.get('duplicate_of'))),
)
RULE_IDS = {rule.id for rule in RULES}
SEVERITY = {rule.id: rule.severity for rule in RULES}


def audit_rules() -> pd.DataFrame:
    """The audit rules: ``id``, ``severity``, ``title``, ``explanation``, ``fix``."""
    return build_frame([vars(rule) for rule in RULES], AUDIT_RULE_COLUMNS)


def findings(facts: Mapping[str, Any], off: Iterable[str] = ()) -> list[str]:
    """Ids of the rules that fire for one row's facts, worst first, ``off`` left out."""
    skip = set(off)
    fired = [rule for rule in RULES if rule.id not in skip and rule.check(facts)]
    fired.sort(key=lambda r: (SEVERITY_ORDER.index(r.severity), r.id))
    return [rule.id for rule in fired]


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


def media_problems(top: Manifest | Index, manifest: Manifest,
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


