"""Rate limits registries announce: Docker Hub's ``ratelimit-*`` headers, the ``x-ratelimit-*``
ones others send, and what a 429 answer says about when to try again.

Docker Hub sends ``ratelimit-limit: 100;w=21600`` (100 pulls per 21600 s),
``ratelimit-remaining: 76;w=21600`` and ``docker-ratelimit-source`` (the IP or account
counted) on manifest GET and HEAD; a HEAD is not counted, so :func:`read_rate_limit`
asks with one. GHCR's 429 body says ``retry-after: 1.16676ms, allowed: 44000/minute``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from ..oci import MANIFEST_ACCEPT
from .auth import repository_scope

__all__ = ["RateLimit", "parse_rate_limit", "read_rate_limit", "retry_after_seconds",
           "describe_limit"]

_COUNT_RE = re.compile(r"^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?")
_BODY_ALLOWED_RE = re.compile(r"allowed:\s*(\d+)\s*/\s*(second|minute|hour|day)", re.I)
_BODY_RETRY_RE = re.compile(r"retry-after:\s*([\d.]+)\s*(ms|s|m|h)?", re.I)
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400,
                 "ms": 0.001, "s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class RateLimit:
    """A registry's pull limit as it announced it; any field may be unknown (None)."""

    limit: int | None
    remaining: int | None
    window_seconds: int | None
    source: str | None
    reset_seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"limit", "remaining", "window_seconds", "source"}``."""
        return {"limit": self.limit, "remaining": self.remaining,
                "window_seconds": self.window_seconds, "source": self.source}


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in headers.items()}
    return next((lowered[n] for n in names if n in lowered), None)


def _count(value: str | None) -> tuple[int | None, int | None]:
    match = _COUNT_RE.match(value or "")
    if not match:
        return None, None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """The limit announced in ``headers`` (Docker Hub's or ``x-ratelimit-*``), or None."""
    limit, window = _count(_header(headers, "ratelimit-limit", "x-ratelimit-limit"))
    remaining, remaining_window = _count(_header(headers, "ratelimit-remaining",
                                                 "x-ratelimit-remaining"))
    source = _header(headers, "docker-ratelimit-source")
    reset_text = _header(headers, "ratelimit-reset", "x-ratelimit-reset")
    reset: float | None = None
    if reset_text and reset_text.strip().isdigit():
        value = int(reset_text.strip())
        # a reset far beyond any window is an epoch time (GitHub's style)
        reset = max(0.0, value - time.time()) if value > 10**9 else float(value)
    if limit is None and remaining is None and source is None:
        return None
    return RateLimit(limit, remaining, window or remaining_window, source, reset)


def retry_after_seconds(headers: Mapping[str, str], body: str = "") -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), or GHCR's body."""
    value = _header(headers, "retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError, IndexError):
                pass
    match = _BODY_RETRY_RE.search(body or "")
    if match:
        return float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    return None


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 120:
        return f"{round(seconds)} seconds"
    if seconds < 7200:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"


def describe_limit(headers: Mapping[str, str], body: str = "") -> tuple[str, dict[str, Any]]:
    """(a sentence saying which limit was hit and when to try again, its parts)."""
    announced = parse_rate_limit(headers)
    wait = retry_after_seconds(headers, body)
    parts: dict[str, Any] = {"limit": None, "remaining": None, "window_seconds": None,
                             "source": None, "retry_after": wait}
    if announced is not None:
        parts.update(announced.as_dict())
        if wait is None:
            wait = announced.reset_seconds
            parts["retry_after"] = wait
    allowed = _BODY_ALLOWED_RE.search(body or "")
    if parts["limit"] is None and allowed:
        parts["limit"] = int(allowed.group(1))
        parts["window_seconds"] = _UNIT_SECONDS[allowed.group(2).lower()]
    sentences = []
    if parts["limit"] is not None:
        window = (f" per {_duration(parts['window_seconds'])}"
                  if parts["window_seconds"] else "")
        who = f" for {parts['source']}" if parts["source"] else ""
        left = (f", {parts['remaining']} left" if parts["remaining"] is not None else "")
        sentences.append(f"The limit is {parts['limit']} requests{window}{who}{left}.")
    else:
        sentences.append("The registry did not say which limit was hit.")
    if wait is not None:
        sentences.append(f"Try again in {_duration(wait)}.")
    elif parts["window_seconds"]:
        sentences.append(f"The window is {_duration(parts['window_seconds'])}: try again "
                         "when it has passed, or log in (authenticated pulls get a higher "
                         "limit on Docker Hub).")
    else:
        sentences.append("Wait a while and try again, or log in for a higher limit.")
    return " ".join(sentences), parts


def read_rate_limit(transport: Any, repository: str, reference: str = "latest"
                    ) -> RateLimit | None:
    """HEAD ``repository:reference`` (Docker Hub does not count a HEAD) and read the limit.

    Headers are read whatever the status (a missing tag still tells the limit); an
    answer without them gives None. A refusal (401/403) or other error raises.
    """
    response = transport.request(
        "HEAD", f"/v2/{repository}/manifests/{reference}",
        scopes=[repository_scope(repository)],
        headers={"Accept": MANIFEST_ACCEPT},
    )
    response.close()
    found = parse_rate_limit(response.headers)
    if found is None and response.status_code != 404:
        from .responses import raise_for_status  # responses reads 429s with this module

        raise_for_status(response, f"check the rate limit with {repository}:{reference}")
    return found
