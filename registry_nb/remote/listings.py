"""Paginated listings: the catalog and tag lists, as real registries page them.

Pages follow the registry's ``Link`` header as given (registries use opaque cursors:
Quay's ``next_page``, ECR's ``last``). When a link that leaves the listing's path
answers 404 (Artifactory drops a virtual repository's prefix, RTFACT-18971), its query
(``last``, ``n``) is tried on the listing's own path, as renovate rebuilds it. A later
page that is still missing is an error, never a silently short list.

Tag lists may hold entries that are not tags: JSON ``null`` (Nexus) and manifest
digests (Artifactory). They are skipped and handed back in :attr:`Listing.skipped`; any
other invalid name means the answer was garbled, and fails the listing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

from ..errors import InvalidReferenceError, NotFoundError, RegistryHTTPError
from ..oci.reference import parse_digest, validate_repository, validate_tag
from .responses import raise_for_status
from .transport import Transport

__all__ = ["Listing", "MAX_PAGE_SIZE", "iter_names"]

log = logging.getLogger(__name__)

#: Page size ceiling: distribution answers 400 when ``n`` is over 1000.
MAX_PAGE_SIZE = 1000

_GARBLED_HINT = "The answer was garbled on the way, or the registry is broken; try again."


@dataclass
class Listing:
    """The names of a listing, and what the registry listed that is not a name."""

    names: list[str] = field(default_factory=list)
    #: Entries skipped, as shown to users (``null``, ``sha256:…``).
    skipped: list[str] = field(default_factory=list)


def _not_a_tag(item: Any) -> str | None:
    """How to show a tag-list entry that is a known registry quirk, or None."""
    if item is None:
        return "null"
    if isinstance(item, str) and ":" in item:
        try:
            parse_digest(item)
        except InvalidReferenceError:
            return None
        return item
    return None


def _names(items: Any, key: str, what: str, status: int, skipped: list[str]) -> list[str]:
    """The valid names of one page; quirks go to ``skipped``; anything else raises."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise RegistryHTTPError(f"{what}: {key!r} in the answer is not a list of names",
                                status=status)
    check = validate_tag if key == "tags" else validate_repository
    names = []
    for item in items:
        quirk = _not_a_tag(item) if key == "tags" else None
        if quirk is not None:
            skipped.append(quirk)
            continue
        if not isinstance(item, str):
            raise RegistryHTTPError(f"{what}: {key!r} in the answer is not a list of names",
                                    status=status)
        try:
            check(item)
        except InvalidReferenceError as exc:
            raise RegistryHTTPError(f"{what}: the registry answered an invalid name "
                                    f"({exc.reason})", status=status,
                                    hint=_GARBLED_HINT) from exc
        names.append(item)
    return names


def _rebuilt(transport: Transport, listing_path: str, link: str) -> str | None:
    """The link's query on the listing's own path, when the link left that path."""
    target = urlsplit(transport.url(link))
    here = urlsplit(transport.url(listing_path))
    if unquote(target.path) == unquote(here.path):
        return None
    return urlunsplit((here.scheme, here.netloc, here.path, target.query, ""))


def _get_page(transport: Transport, path: str, url: str, scopes: list[str],
              params: dict[str, Any] | None, what: str) -> requests.Response:
    """One page; a next-page link that 404s is tried on the listing's path, then fails."""
    response = transport.request("GET", url, scopes=scopes, params=params)
    if url == path:
        raise_for_status(response, what)
        return response
    rebuilt = _rebuilt(transport, path, url) if response.status_code == 404 else None
    if rebuilt is not None:
        response.close()
        log.info("%s: the next-page link %s answered 404; trying its query on %s", what,
                 urlsplit(url).path, path)
        response = transport.request("GET", rebuilt, scopes=scopes)
    try:
        raise_for_status(response, what)
    except NotFoundError as exc:
        raise RegistryHTTPError(
            f"{what}: the registry's link to the next page answered 404, so the list "
            f"would stop short ({exc.message})", status=404,
            hint="The registry's pagination is broken; list again later or report it "
            "to the registry's admin.",
        ) from exc
    return response


def iter_names(transport: Transport, path: str, key: str, scopes: list[str],
               page_size: int | None, limit: int | None, what: str,
               skipped: list[str] | None = None) -> Iterator[str]:
    """Yield the names under ``key`` of every page of the listing at ``path``.

    ``page_size`` is sent as ``n`` (capped at 1000) on the first request only.
    Entries skipped as not names are appended to ``skipped`` when given.
    """
    params: dict[str, Any] | None = None
    if page_size is not None:
        params = {"n": max(1, min(int(page_size), MAX_PAGE_SIZE))}
    url: str | None = path
    seen: set[str] = set()
    yielded = 0
    junk = skipped if skipped is not None else []
    while url is not None:
        if limit is not None and yielded >= limit:
            return
        response = _get_page(transport, path, url, scopes, params, what)
        try:
            # Strict UTF-8 (JSON's encoding): a garbled byte fails here instead of
            # turning into a wrong name.
            body = json.loads(response.content.decode("utf-8"))
        except ValueError as exc:
            raise RegistryHTTPError(
                f"{what}: the registry answered with something that is not UTF-8 JSON",
                status=response.status_code, hint=_GARBLED_HINT,
            ) from exc
        before = len(junk)
        items = body.get(key) if isinstance(body, dict) else None
        names = _names(items, key, what, response.status_code, junk)
        if len(junk) > before:
            log.warning("%s: skipped %d entries that are not names (%s)", what,
                        len(junk) - before, ", ".join(junk[before:before + 3]))
        for name in names:
            if limit is not None and yielded >= limit:
                return
            yielded += 1
            yield name
        nxt = response.links.get("next", {}).get("url")
        url, params = (nxt, None) if nxt else (None, None)
        if url is not None:
            absolute = transport.url(url)
            if absolute in seen:
                raise RegistryHTTPError(
                    f"{what}: the registry's Link header goes round in circles",
                    status=response.status_code,
                    hint="The registry's pagination is broken; pass limit= or page_size=.",
                )
            seen.add(absolute)
