"""When a request is sent again, after how long, and how many run at once.

One :class:`RetryPolicy` per transport decides every retry: connection *establishment*
failures (refused, DNS, connect timeout) go to urllib3's ``Retry`` inside the connection
pool, for every method, since nothing was sent; statuses 429/502/503/504 and failures
after the request was sent are retried by the transport's loop, only for idempotent
methods with a replayable body, and 500 only for reads (GET, HEAD: go-containerregistry
retries it too; distribution's filesystem driver answers 500 to a HEAD while another
client commits the same blob, and a DELETE or PUT that failed that way is the caller's
to judge), after ``Retry-After`` (read by urllib3's parser) or an
exponential backoff with jitter, at most ``retries`` times and ``budget`` seconds of
waiting in all. Every answer's status feeds the :class:`AdaptiveLimit`.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import requests
from urllib3.util.retry import Retry

from .request import RegistryRequest

__all__ = ["RetryPolicy", "AdaptiveLimit", "IDEMPOTENT_METHODS", "RETRY_STATUSES",
           "READ_RETRY_STATUSES", "MAX_RETRY_WAIT"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses retried only for requests that change nothing (GET, HEAD).
READ_RETRY_STATUSES = frozenset({500})
READ_METHODS = frozenset({"GET", "HEAD"})
#: Most seconds one request waits between its tries, in all.
MAX_RETRY_WAIT = 30.0
#: First backoff step in seconds (doubled per try); tests shorten it.
BACKOFF = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; ``backoff=None`` uses the module's :data:`BACKOFF`."""

    retries: int = 3
    statuses: frozenset[int] = RETRY_STATUSES
    methods: frozenset[str] = IDEMPOTENT_METHODS
    budget: float = MAX_RETRY_WAIT
    backoff: float | None = None

    def connect_retry(self) -> Retry:
        """urllib3's ``Retry`` for the connection pool: connection-open failures only."""
        return Retry(
            total=self.retries, connect=self.retries, read=0, status=0, other=0,
            redirect=False, backoff_factor=0.25, backoff_max=4.0,
            raise_on_redirect=False, raise_on_status=False,
        )

    def may_retry(self, request: RegistryRequest) -> bool:
        """True when ``request`` may be sent again at all (idempotent, replayable body)."""
        return request.method in self.methods and request.body.replayable

    def retries_status(self, request: RegistryRequest, status: int) -> bool:
        """True when an answer with ``status`` to ``request`` is worth sending it again."""
        return status in self.statuses or (
            status in READ_RETRY_STATUSES and request.method in READ_METHODS)

    def delay(self, attempt: int, response: requests.Response | None = None) -> float:
        """Seconds before try ``attempt + 1``: the registry's ``Retry-After``, else backoff."""
        value = response.headers.get("Retry-After") if response is not None else None
        if value:
            try:
                return Retry().parse_retry_after(value)
            except Exception:  # noqa: BLE001 - urllib3 raises InvalidHeader for junk
                pass
        base = BACKOFF if self.backoff is None else self.backoff
        return base * (2**attempt) * (1 + random.random() / 4)


class AdaptiveLimit:
    """At most ``limit`` requests waiting for their answer: halved when the registry
    answers 429 (too many requests), grown back by one after ``limit`` answers in a row
    without one, up to ``maximum``. Use as a context manager around one request."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, int(maximum))
        self.limit = self.maximum
        self.in_flight = 0
        self.throttled = 0  # 429 answers seen
        self._calm = 0
        self._cond = threading.Condition()

    def __enter__(self) -> AdaptiveLimit:
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify()

    def observe(self, status: int) -> None:
        """Adapt to one answer's status."""
        with self._cond:
            if status == 429:
                self.throttled += 1
                self.limit = max(1, self.limit // 2)
                self._calm = 0
            elif self.limit < self.maximum:
                self._calm += 1
                if self._calm >= self.limit:
                    self.limit += 1
                    self._calm = 0
                    self._cond.notify()
