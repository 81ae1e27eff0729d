"""The OCI 1.1 referrers API: ``GET /v2/<name>/referrers/<digest>``.

The answer is an image index of descriptors (with ``artifactType`` and annotations),
paged with ``Link: <…>; rel="next"``; a registry that applied an ``artifactType``
filter says so in ``OCI-Filters-Applied``. A registry without the API answers 404
(CNCF distribution, every version) or something that is not an index: both mean
"unsupported", and the caller reads the ``<alg>-<hex>`` fallback tag instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import RegistryHTTPError
from ..oci import MAX_MANIFEST_BYTES, OCI_INDEX
from ..oci.artifacts import parse_referrers_index
from ..oci.manifest import Descriptor
from ..oci.reference import parse_digest
from .auth import repository_scope
from .responses import raise_for_status
from .transport import Transport

__all__ = ["ReferrersAnswer", "fetch_referrers", "MAX_REFERRER_PAGES"]

#: Pages followed before giving up on a registry whose Link header never ends.
MAX_REFERRER_PAGES = 100


@dataclass(frozen=True)
class ReferrersAnswer:
    """What the referrers API listed; ``filters_applied`` as ``OCI-Filters-Applied`` said."""

    descriptors: list[Descriptor]
    filters_applied: tuple[str, ...] = ()


def fetch_referrers(transport: Transport, repository: str, digest: str, *,
                    artifact_type: str | None = None) -> ReferrersAnswer | None:
    """Every referrer of ``repository@digest`` (all pages), or None when unsupported.

    ``artifact_type`` is sent as the filter; when the registry did not apply it (no
    ``artifactType`` in ``OCI-Filters-Applied``) the descriptors are filtered here.
    """
    parse_digest(digest)
    what = f"list the referrers of {repository}@{digest}"
    url: str | None = f"/v2/{repository}/referrers/{digest}"
    params = {"artifactType": artifact_type} if artifact_type else None
    found: list[Descriptor] = []
    applied: set[str] = set()
    seen: set[str] = set()
    for _ in range(MAX_REFERRER_PAGES):
        if url is None:
            break
        response = transport.request("GET", url, scopes=[repository_scope(repository)],
                                     headers={"Accept": OCI_INDEX}, params=params)
        try:
            if response.status_code in (404, 405) and not found:
                return None
            raise_for_status(response, what)
            content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
            if content_type != OCI_INDEX:
                if found:
                    raise RegistryHTTPError(f"{what}: a later page is not an image index",
                                            status=response.status_code)
                return None  # an HTML page, a JSON error: no referrers API here
            body = response.content
        finally:
            response.close()
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryHTTPError(f"{what}: a page is over {MAX_MANIFEST_BYTES} bytes",
                                    status=response.status_code)
        try:
            json.loads(body)
        except ValueError:
            raise RegistryHTTPError(f"{what}: the answer is not JSON",
                                    status=response.status_code,
                                    hint="The answer was garbled on the way; try again.") from None
        found.extend(parse_referrers_index(body))
        applied.update(v.strip() for v in
                       (response.headers.get("OCI-Filters-Applied") or "").split(",") if v.strip())
        nxt = response.links.get("next", {}).get("url")
        url, params = (nxt, None) if nxt else (None, None)
        if url is not None:
            absolute = transport.url(url)
            if absolute in seen:
                raise RegistryHTTPError(f"{what}: the Link header goes round in circles",
                                        status=response.status_code)
            seen.add(absolute)
    if artifact_type and "artifactType" not in applied:
        found = [d for d in found if d.artifact_type == artifact_type]
    return ReferrersAnswer(found, tuple(sorted(applied)))
