"""pandas DataFrames with fixed columns and dtypes.

Every frame the facade returns is built here from plain row dicts, so an empty
result keeps its columns and dtypes and every frame follows the same rules:
snake_case names, ``size_bytes`` as integers, ``size_mb`` as floats (bytes / 10**6,
as docker prints MB), times as timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .oci.config import Timestamp

if TYPE_CHECKING:  # pandas is imported on first use: `import registry_nb` stays quick
    import pandas as pd

__all__ = [
    "LOCAL_IMAGE_COLUMNS",
    "REGISTRY_IMAGE_COLUMNS",
    "LAYER_COLUMNS",
    "RETENTION_COLUMNS",
    "RETENTION_OUTCOME_COLUMNS",
    "build_frame",
    "to_utc",
    "size_mb",
]

_TIME = "datetime64[ns, UTC]"

#: One row per local tag (``ContainerRegistry.local_images_frame``).
LOCAL_IMAGE_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "image_id": "string",
    "size_bytes": "int64",
    "size_mb": "float64",
    "created": _TIME,
    "labels": "object",
    "architecture": "string",
    "os": "string",
}

#: One row per registry tag (``ContainerRegistry.registry_images_frame``).
#: ``size_bytes`` and ``layer_count`` are nullable (``Int64``): a tag whose
#: details could not be read keeps its row, with ``error`` saying why.
REGISTRY_IMAGE_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "digest": "string",
    "media_type": "string",
    "size_bytes": "Int64",
    "size_mb": "float64",
    "layer_count": "Int64",
    "created": _TIME,
    "architecture": "string",
    "os": "string",
    "labels": "object",
    "platforms": "object",
    "registry_url": "string",
    "error": "string",
}

#: One row per layer, in order (``ContainerRegistry.layers_frame``).
LAYER_COLUMNS: dict[str, str] = {
    "index": "int64",
    "digest": "string",
    "media_type": "string",
    "size_bytes": "int64",
    "size_mb": "float64",
    "created_by": "string",
    "created": _TIME,
}

#: One row per tag of a retention plan (``ContainerRegistry.retention_plan``).
RETENTION_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "digest": "string",
    "created": _TIME,
    "action": "string",
    "reason": "string",
}

#: The plan's rows with what happened (``ContainerRegistry.apply_retention``).
RETENTION_OUTCOME_COLUMNS: dict[str, str] = {
    **RETENTION_COLUMNS,
    "status": "string",
    "error": "string",
}


def size_mb(size_bytes: int | None) -> float | None:
    """Bytes to megabytes (10**6 bytes, as docker prints sizes), rounded to 3 places."""
    if size_bytes is None:
        return None
    return round(size_bytes / 1_000_000, 3)


def to_utc(value: Any) -> pd.Timestamp | None:
    """A datetime, ISO-8601 text or epoch seconds as a tz-aware UTC timestamp.

    None for nulls, unparsable values and times a ``datetime64[ns]`` column cannot
    hold (before 1677 or after 2262, such as Go's zero time ``0001-01-01`` that
    some image builders write).
    """
    if value is None or isinstance(value, bool) or value == "":
        return None
    import pandas as pd

    try:
        if isinstance(value, (int, float)):
            stamp = pd.Timestamp(datetime.fromtimestamp(value, tz=timezone.utc))
        elif isinstance(value, Timestamp):  # an image config's time: keep its nanoseconds
            stamp = pd.Timestamp(value) + pd.Timedelta(nanoseconds=value.nanosecond)
        else:
            stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            return None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.as_unit("ns")
    except (ValueError, TypeError, OverflowError, OSError):  # OutOfBoundsDatetime is a ValueError
        return None


def build_frame(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str],
                extra: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Build a DataFrame with exactly ``columns`` (plus ``extra``) in their dtypes.

    Missing keys become nulls; unknown keys are dropped. Time columns are
    converted with :func:`to_utc`.
    """
    import pandas as pd

    schema = dict(columns)
    if extra:
        schema.update(extra)
    rows = list(rows)
    data: dict[str, pd.Series] = {}
    for name, dtype in schema.items():
        values = [row.get(name) for row in rows]
        if dtype == _TIME:
            series = pd.Series([to_utc(v) for v in values], dtype=_TIME)
        elif dtype == "object":
            series = pd.Series(values, dtype="object")
        else:
            series = pd.Series(values, dtype=dtype)
        data[name] = series
    return pd.DataFrame(data, columns=list(schema))


# ---------------------------------------------------------------- audits
# (registry_nb.audit, registry_nb.vulns; appended, the schemas above unchanged)

#: One row per registry tag with its audit findings (``ContainerRegistry.audit``):
#: the registry listing's columns, then the facts each rule looks at, then the
#: rule ids that fired. Counts and byte sums are nullable: a tag that could not
#: be read keeps its row with ``error`` set.
AUDIT_COLUMNS: dict[str, str] = {
    **REGISTRY_IMAGE_COLUMNS,
    "age_days": "float64",
    "duplicate_of": "string",
    "duplicate_tags": "object",
    "shared_layers": "Int64",
    "shared_bytes": "Int64",
    "shared_with": "object",
    "largest_layer_bytes": "Int64",
    "largest_layer_share": "float64",
    "missing_labels": "object",
    "user": "string",
    "runs_as_root": "boolean",
    "secret_env": "object",
    "latest_only": "boolean",
    "media_problems": "object",
    "vuln_critical": "Int64",
    "vuln_high": "Int64",
    "vuln_medium": "Int64",
    "vuln_low": "Int64",
    "vuln_unknown": "Int64",
    "findings": "object",
    "finding_count": "int64",
    "worst_severity": "string",
}

#: The audit rules (``audit_rules()``), one row per rule.
AUDIT_RULE_COLUMNS: dict[str, str] = {
    "id": "string",
    "severity": "string",
    "title": "string",
    "explanation": "string",
    "fix": "string",
}

#: What a registry stores against what its images add up to, one row per
#: repository plus a last row (``is_total``) for the whole registry
#: (``ContainerRegistry.storage_frame``).
STORAGE_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag_count": "int64",
    "manifest_count": "int64",
    "blob_count": "int64",
    "image_bytes": "int64",
    "stored_bytes": "int64",
    "saved_bytes": "int64",
    "shared_bytes": "int64",
    "exclusive_bytes": "int64",
    "image_mb": "float64",
    "stored_mb": "float64",
    "saved_mb": "float64",
    "dedup_ratio": "float64",
    "is_total": "bool",
    "error": "string",
}

#: One row per tar entry of every layer (``ContainerRegistry.layer_contents``).
LAYER_FILE_COLUMNS: dict[str, str] = {
    "layer": "int64",
    "layer_digest": "string",
    "path": "string",
    "raw_name": "string",
    "type": "string",
    "size_bytes": "int64",
    "mode": "int64",
    "permissions": "string",
    "uid": "int64",
    "gid": "int64",
    "mtime": _TIME,
    "link_target": "string",
    "deletes": "string",
    "unsafe": "bool",
    "flags": "object",
}

#: One row per layer as streamed (``WasteReport.layers``).
LAYER_SCAN_COLUMNS: dict[str, str] = {
    "index": "int64",
    "digest": "string",
    "media_type": "string",
    "compression": "string",
    "size_bytes": "int64",
    "uncompressed_size_bytes": "int64",
    "entries": "int64",
    "added_bytes": "int64",
    "wasted_bytes": "int64",
    "removes_bytes": "int64",
    "notes": "object",
}

#: One row per file version hidden in the final file system (``WasteReport.files``).
WASTED_FILE_COLUMNS: dict[str, str] = {
    "path": "string",
    "type": "string",
    "size_bytes": "int64",
    "size_mb": "float64",
    "layer": "int64",
    "removed_in": "int64",
    "how": "string",
}

#: One row per installed package (``ContainerRegistry.packages_frame``).
PACKAGE_COLUMNS: dict[str, str] = {
    "ecosystem": "string",
    "name": "string",
    "version": "string",
    "architecture": "string",
    "layer": "int64",
    "layer_digest": "string",
    "path": "string",
}

#: One row per vulnerability match of a Trivy or Grype report (``vulnerabilities_frame``).
VULNERABILITY_COLUMNS: dict[str, str] = {
    "id": "string",
    "package": "string",
    "installed_version": "string",
    "fixed_version": "string",
    "severity": "string",
    "title": "string",
    "source": "string",
    "package_type": "string",
    "target": "string",
    "layer_digest": "string",
    "data_source": "string",
    "url": "string",
}

__all__ += [
    "AUDIT_COLUMNS", "AUDIT_RULE_COLUMNS", "STORAGE_COLUMNS", "LAYER_FILE_COLUMNS",
    "LAYER_SCAN_COLUMNS", "WASTED_FILE_COLUMNS", "PACKAGE_COLUMNS", "VULNERABILITY_COLUMNS",
]

# ---------------------------------------------------------------- operate
#: One row per tag of a sync (``ContainerRegistry.sync_repositories``); ``bytes`` are
#: blob bytes moved over the wire, ``mounted`` the blobs mounted from another repository
#: instead, ``kind`` says whether the row is a tag or a referrer.
SYNC_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "kind": "string",
    "status": "string",
    "digest": "string",
    "bytes": "int64",
    "error": "string",
    "subject": "string",
    "mounted": "int64",
}

__all__ += ["SYNC_COLUMNS"]

# ---------------------------------------------------------------- supply chain

#: One row per attachment of an image (``ContainerRegistry.referrers``).
REFERRER_COLUMNS: dict[str, str] = {
    "found_by": "string",
    "artifact_type": "string",
    "kind": "string",
    "format": "string",
    "digest": "string",
    "media_type": "string",
    "size": "Int64",
    "annotations": "object",
    "subject": "string",
    "tag": "string",
}

__all__ += ["REFERRER_COLUMNS"]

#: One row per image and platform (``ContainerRegistry.supply_chain_frame``); digest
#: tags whose subject is gone get a row of their own (``orphan`` True).
SUPPLY_CHAIN_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "platform": "string",
    "digest": "string",
    "index_digest": "string",
    "attachments": "Int64",
    "found_by": "object",
    "signed": "boolean",
    "signature_verified": "boolean",
    "signature_format": "string",
    "signature_reason": "string",
    "signer": "string",
    "signed_at": _TIME,
    "sbom_format": "string",
    "sbom_packages": "Int64",
    "provenance_version": "string",
    "provenance_mode": "string",
    "provenance_builder": "string",
    "source_repository": "string",
    "source_revision": "string",
    "build_finished": _TIME,
    "secret_build_args": "object",
    "drifted_bases": "object",
    "attestations": "Int64",
    "attestations_signed": "Int64",
    "attestations_verified": "Int64",
    "attestation_signatures": "object",
    "subject_mismatches": "object",
    "orphan": "boolean",
    "findings": "object",
    "error": "string",
}

#: Packages of an attached SBOM (``ContainerRegistry.sbom_frame``).
SBOM_PACKAGE_COLUMNS: dict[str, str] = {
    "name": "string",
    "version": "string",
    "purl": "string",
    "type": "string",
    "ecosystem": "string",
    "licenses": "object",
    "cpe": "string",
}

__all__ += ["SUPPLY_CHAIN_COLUMNS", "SBOM_PACKAGE_COLUMNS"]
