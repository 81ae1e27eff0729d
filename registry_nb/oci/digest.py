"""Content addressing: hash bytes as they arrive and check them against their digest.

One :class:`DigestVerifier` is behind every verified read of this project: blobs
streamed from a registry (with resumes), blobs read from a layout or an archive,
manifests fetched by digest. A length over the expected size fails as soon as it
overflows; a wrong length or digest fails after the last byte.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

from ..errors import DigestMismatchError
from .reference import parse_digest

__all__ = ["DigestVerifier", "digest_of", "verify_bytes", "verified_chunks"]


def digest_of(data: bytes, like: str = "sha256:") -> str:
    """``data``'s digest in the algorithm of the digest ``like``."""
    algorithm = like.split(":", 1)[0]
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class DigestVerifier:
    """Hashes chunks of one piece of content and checks its digest and length.

    ``size`` may be unknown at first and given later (:meth:`expect_size`), as when a
    registry says the length of a blob in its answer.
    """

    def __init__(self, digest: str, size: int | None = None, *, what: str = "content") -> None:
        algorithm, _ = parse_digest(digest)
        self.digest = digest
        self.size = size
        self.what = what
        self.done = 0
        self._hasher = hashlib.new(algorithm)

    def expect_size(self, size: int) -> None:
        """Set the expected length when it becomes known."""
        self.size = size

    def update(self, chunk: bytes) -> None:
        """Hash one chunk; raise as soon as the content is longer than expected."""
        self.done += len(chunk)
        if self.size is not None and self.done > self.size:
            raise DigestMismatchError(f"{self.what}: more bytes than expected",
                                      expected=f"{self.size} bytes",
                                      actual=f"over {self.size} bytes")
        self._hasher.update(chunk)

    def finish(self) -> None:
        """Raise :class:`DigestMismatchError` unless the length and digest are right."""
        if self.size is not None and self.done != self.size:
            raise DigestMismatchError(f"{self.what}: wrong length",
                                      expected=f"{self.size} bytes", actual=f"{self.done} bytes")
        actual = f"{self.digest.split(':', 1)[0]}:{self._hasher.hexdigest()}"
        if actual != self.digest:
            raise DigestMismatchError(f"{self.what}: content does not match its digest",
                                      expected=self.digest, actual=actual)


def verify_bytes(data: bytes, digest: str, what: str, size: int | None = None) -> None:
    """Raise :class:`DigestMismatchError` unless ``data`` has this digest (and size)."""
    verifier = DigestVerifier(digest, size, what=what)
    verifier.update(data)
    verifier.finish()


def verified_chunks(chunks: Iterable[bytes], digest: str, size: int | None, what: str,
                    progress: Callable[[int, int | None], None] | None = None
                    ) -> Iterator[bytes]:
    """Pass ``chunks`` through, verified (see :class:`DigestVerifier`); the error, if
    any, comes after the last chunk, so nothing may be committed before the end."""
    verifier = DigestVerifier(digest, size, what=what)
    for chunk in chunks:
        verifier.update(chunk)
        if progress is not None:
            progress(verifier.done, size)
        yield chunk
    verifier.finish()
