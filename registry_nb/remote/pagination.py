"""Paginated listings of the distribution API: the catalog and tag lists.

One loop for both: send ``n`` once, follow ``Link: <…>; rel="next"`` as the registry
wrote it, validate every name against the reference grammar, stop at ``limit``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidReferenceError, RegistryHTTPError
from ..oci.reference import validate_repository, validate_tag
from .responses import raise_for_status
from .transport import Transport

__all__ = ["paged_names", "MAX_PAGE_SIZE"]

#: Page size ceiling: distribution answers 400 when ``n`` is over 1000.
MAX_PAGE_SIZE = 1000


def paged_names(transport: Transport, path: str, key: str, scopes: list[str],
                page_size: int | None, limit: int | None, what: str) -> Iterator[str]:
    """Names (``repositories`` or ``tags``) of every page of a listing, validated.

    ``page_size`` is sent as ``n`` (capped at :data:`MAX_PAGE_SIZE`) on the first request;
    later pages follow the registry's ``Link`` header as given (registries use opaque
    cursors). A garbled answer or a Link that goes round in circles raises.
    """
    params: dict[str, Any] | None = None
    if page_size is not None:
        params = {"n": max(1, min(int(page_size), MAX_PAGE_SIZE))}
    url: str | None = path
    seen: set[str] = set()
    yielded = 0
    while url is not None:
        if limit is not None and yielded >= limit:
            return
        response = transport.request("GET", url, scopes=scopes, params=params)
        raise_for_status(response, what)
        try:
            # Strict UTF-8 (JSON's encoding): a garbled byte fails here instead of
            # turning into a wrong name.
            body = json.loads(response.content.decode("utf-8"))
        except ValueError as exc:
            raise RegistryHTTPError(
                f"{what}: the registry answered with something that is not UTF-8 JSON",
                status=response.status_code,
                hint="The answer was garbled on the way, or the registry is broken; "
                "try again.",
            ) from exc
        items = body.get(key) if isinstance(body, dict) else None
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise RegistryHTTPError(f"{what}: {key!r} in the answer is not a list of names",
                                    status=response.status_code)
        check = validate_tag if key == "tags" else validate_repository
        try:
            for item in items:
                check(item)
        except InvalidReferenceError as exc:
            raise RegistryHTTPError(
                f"{what}: the registry answered an invalid name ({exc.reason})",
                status=response.status_code,
                hint="The answer was garbled on the way, or the registry is broken; "
                "try again.",
            ) from exc
        for item in items:
            if limit is not None and yielded >= limit:
                return
            yielded += 1
            yield item
        # Follow the Link header verbatim: registries use opaque cursors.
        nxt = response.links.get("next", {}).get("url")
        if nxt:
            absolute = transport.url(nxt)
            if absolute in seen:
                raise RegistryHTTPError(
                    f"{what}: the registry's Link header goes round in circles",
                    status=response.status_code,
                    hint="The registry's pagination is broken; pass limit= or page_size=.",
                )
            seen.add(absolute)
        url, params = (nxt, None) if nxt else (None, None)
