"""Uploads of one blob to one repository that this process runs at one time go once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .chunks import BlobProgress

__all__ = ["SharedUploads", "SHARED_UPLOADS"]


class SharedUploads:
    """The uploads of one blob to one repository running in this process at one time.

    The first caller sends; callers that come while it runs wait (reporting progress,
    so that a cancelled operation's stop check still runs), then move nothing when it
    succeeded, or send themselves when it failed. Besides the bandwidth, this avoids a
    race in distribution's filesystem driver, which rewrites a repository's blob link
    (truncate, then write) on every commit: a manifest PUT or blob HEAD that reads the
    link at that moment sees no blob (``MANIFEST_BLOB_UNKNOWN``, or a 500).
    """

    POLL = 0.25

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._running: dict[tuple[str, str, str], tuple[threading.Event, list[bool]]] = {}

    @contextlib.contextmanager
    def turn(self, key: tuple[str, str, str], progress: BlobProgress | None,
             size: int | None) -> Iterator[bool]:
        """Yield True when this caller sends the blob, False when another just did."""
        while True:
            with self._guard:
                running = self._running.get(key)
                if running is None:
                    mine = (threading.Event(), [False])
                    self._running[key] = mine
            if running is None:
                break
            done, succeeded = running
            while not done.wait(self.POLL):
                if progress is not None:
                    progress(0, size)  # its stop check raises when the caller cancels
            if succeeded[0]:
                if progress is not None and size is not None:
                    progress(size, size)
                yield False
                return
        try:
            yield True
            mine[1][0] = True
        finally:
            with self._guard:
                del self._running[key]
            mine[0].set()


#: The process's one :class:`SharedUploads`.
SHARED_UPLOADS = SharedUploads()
