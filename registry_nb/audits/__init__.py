"""Audits: what an image holds and what is risky.

:mod:`.rules` (the rules as data and their checks), :mod:`.audit` (per-tag findings,
storage), :mod:`.contents` (files, wasted space, packages inside layers) and
:mod:`.vulns` (Trivy and Grype reports as frames). Every public name is re-exported here.
"""

from __future__ import annotations

from .audit import audit, storage_frame
from .contents import (
    SCAN_CACHE_SIZE,
    WasteReport,
    layer_contents,
    packages_frame,
    scan,
    wasted_space,
)
from .rules import (
    LARGE_LAYER_MIN_BYTES,
    LARGE_LAYER_SHARE,
    OCI_LABELS,
    RULES,
    SEVERITY_ORDER,
    STALE_AFTER_DAYS,
    Rule,
    audit_rules,
    looks_secret,
    media_problems,
    runs_as_root,
)
from .vulns import Report, severity_counts, vulnerabilities_frame

__all__ = [
    "LARGE_LAYER_MIN_BYTES", "LARGE_LAYER_SHARE", "OCI_LABELS", "RULES", "SCAN_CACHE_SIZE",
    "SEVERITY_ORDER", "STALE_AFTER_DAYS", "Report", "Rule", "WasteReport", "audit",
    "audit_rules", "layer_contents", "looks_secret", "media_problems", "packages_frame",
    "runs_as_root", "scan", "severity_counts", "storage_frame", "vulnerabilities_frame",
    "wasted_space",
]
