"""Typed errors raised by registry_nb.

Every failure a user can meet is a :class:`RegistryError` subclass whose message
says what went wrong and what to do about it. ``CodomyrmexError`` is the same
class, kept for code written against the original specification.

Messages never contain secrets: callers pass only what is safe to show.
"""

from __future__ import annotations

__all__ = [
    "RegistryError",
    "CodomyrmexError",
    "InvalidReferenceError",
    "AuthenticationError",
    "CredentialsRefusedError",
    "NotARegistryError",
    "NotFoundError",
    "ImageNotFoundError",
    "ManifestNotFoundError",
    "BlobNotFoundError",
    "DigestMismatchError",
    "RegistryUnavailableError",
    "RegistryHTTPError",
    "BlobUploadError",
    "UnsupportedMediaTypeError",
    "CompressionSettingError",
    "InvalidManifestError",
    "InvalidPlatformError",
    "InsecureRegistryError",
    "LayoutNameConflictError",
    "EngineError",
    "BuildError",
    "OperationCancelled",
    "InvalidAttestationError",
    "TrustMaterialError",
    "SbomExportError",
    "UnsupportedOperationError",
    "DeletionRefusedError",
    "RateLimitedError",
]


class RegistryError(Exception):
    """Base class of every error registry_nb raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{_sentence(message)} {hint}" if hint else message)


def _sentence(text: str) -> str:
    """``text`` ending with a full stop (or its own ``!``, ``?``, ``:``, ``)``...)."""
    stripped = text.rstrip()
    return stripped if stripped.endswith((".", "!", "?", ":", ";")) else stripped + "."


#: Alias kept for code written against the original specification.
CodomyrmexError = RegistryError


class InvalidReferenceError(RegistryError, ValueError):
    """An image reference (name, tag or digest) does not follow the grammar."""

    def __init__(self, reference: str, part: str, reason: str, *,
                 hint: str | None = None) -> None:
        self.reference = reference
        self.part = part
        self.reason = reason
        super().__init__(
            f"invalid image reference {reference!r}: {part} {reason}",
            hint=hint or "Write references as [host[:port]/]path[:tag][@sha256:<64 hex>].",
        )


class AuthenticationError(RegistryError):
    """The registry refused the credentials, or demanded some and none were given."""


class CredentialsRefusedError(AuthenticationError):
    """The registry (or its token service, or the engine on its behalf) refused the
    username and password, or the token, that were given.

    ``registry`` is the host and ``username`` the user (None for a token alone);
    ``operation`` says what was being done (``"pull"``, ``"push"``...). The default
    hint speaks Python; front ends (the CLI) replace it with their own words.
    """

    def __init__(self, registry: str, username: str | None, *, operation: str | None = None,
                 who: str | None = None, hint: str | None = None) -> None:
        self.registry = registry
        self.username = username or None
        self.operation = operation
        if who is None:
            who = f"user {username}" if username else "the given token"
        why = "the password is wrong or the user is unknown" if username else \
            "it is wrong or has expired"
        during = f" to {operation}" if operation else ""
        if hint is None:
            given = (f"RegistryCredentials(username={username!r}, password=...)" if username
                     else "RegistryCredentials(token=...)")
            hint = (f"Check the secret given as credentials={given}, or run "
                    f"`docker login {registry}` and pass no credentials.")
        what = f"the credentials for {who}" if username or who != "the given token" else who
        super().__init__(f"registry {registry} refused {what}{during} ({why}).", hint=hint)


class NotFoundError(RegistryError):
    """Something the user named does not exist (image, tag, manifest or blob)."""


class ImageNotFoundError(NotFoundError):
    """A repository or tag does not exist, in the registry or in the engine."""


class ManifestNotFoundError(ImageNotFoundError):
    """The registry has no manifest for this tag or digest."""


class BlobNotFoundError(NotFoundError):
    """The registry has no blob with this digest in this repository."""


class DigestMismatchError(RegistryError):
    """Content did not hash to the digest (or length) it was addressed by."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{message}: expected {expected}, got {actual}",
            hint="The content was discarded; the registry or the network corrupted it.",
        )


class RegistryUnavailableError(RegistryError):
    """The registry could not be reached (connection refused, DNS, timeout, TLS)."""


class NotARegistryError(RegistryUnavailableError):
    """Something answers at the address, but it is not an OCI / Docker v2 registry
    (``GET /v2/`` gives no registry answer: a web page, a 404 without
    ``Docker-Distribution-API-Version``). ``url`` is the address that was asked."""

    def __init__(self, url: str, detail: str, *, hint: str | None = None) -> None:
        self.url = url
        super().__init__(
            f"{url} is not a container registry: {detail}",
            hint=hint or "Check the host and port (a registry answers GET /v2/ with 200 or "
            "401 and a Docker-Distribution-API-Version header); JupyterLab and other web "
            "servers do not.",
        )


class RegistryHTTPError(RegistryError):
    """The registry answered with an error status.

    ``status`` is the HTTP status and ``code`` the first error code of the
    registry's JSON error body (``MANIFEST_UNKNOWN``, ``DENIED``...) when present.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        super().__init__(message, hint=hint)


class BlobUploadError(RegistryHTTPError):
    """The registry did not take a blob: it refused every way of sending it, or its
    upload stopped advancing, and the bytes sent reached the bound for the blob."""


class UnsupportedMediaTypeError(RegistryError):
    """A manifest or layer has a media type this toolkit cannot handle."""


class CompressionSettingError(RegistryError, ValueError):
    """A layer compressor or level that cannot be used: unknown, out of range, or its
    module is not installed."""


class InvalidManifestError(RegistryError):
    """A manifest, index or config is not valid JSON of the expected shape or size."""


class InvalidPlatformError(RegistryError, ValueError):
    """A platform string is not ``os/architecture[/variant]``."""


class InsecureRegistryError(RegistryError):
    """Plain HTTP or an unverified certificate was needed but not allowed."""


class LayoutNameConflictError(RegistryError):
    """An OCI layout already names another image the way a save would name this one.

    ``name`` is the ``ref.name`` both want; ``existing`` and ``incoming`` say which
    images (full references, or a digest when the layout does not say).
    """

    def __init__(self, message: str, *, name: str, existing: str, incoming: str,
                 hint: str | None = None) -> None:
        self.name = name
        self.existing = existing
        self.incoming = incoming
        super().__init__(message, hint=hint)


class EngineError(RegistryError):
    """The Docker engine refused or failed an operation."""


class BuildError(EngineError):
    """A docker build failed; ``step`` and ``log_tail`` tell where and why."""

    def __init__(self, message: str, *, step: str | None = None, log_tail: str = "") -> None:
        self.step = step
        self.log_tail = log_tail
        detail = f" at step {step!r}" if step else ""
        tail = f"\n--- last build output ---\n{log_tail}" if log_tail else ""
        super().__init__(f"build failed{detail}: {message}{tail}")


class OperationCancelled(RegistryError):
    """The user cancelled a running operation; nothing partial was kept."""

    def _render_traceback_(self) -> list[str]:
        """IPython shows a cancellation as one line, not a traceback."""
        return [f"{type(self).__name__}: {self}"]


class InvalidAttestationError(InvalidManifestError):
    """A signature, attestation, provenance or SBOM document attached to an image is malformed."""


class TrustMaterialError(RegistryError, ValueError):
    """A public key, certificate or trusted root given for verification cannot be used."""


class SbomExportError(RegistryError, ValueError):
    """A packages table cannot be written as an SBOM (unknown format, a row without a name)."""


class UnsupportedOperationError(RegistryError):
    """The registry cannot do this (a delete it does not offer, a tag it cannot remove
    alone); the message says what it can do instead."""


class DeletionRefusedError(RegistryError):
    """A delete would take more than was named (an index still lists the manifest, or
    other tags share it); ``force=True`` does it anyway, and the message says what goes."""


class RateLimitedError(RegistryHTTPError):
    """The registry answered 429: ``limit``, ``remaining``, ``window_seconds`` and
    ``retry_after`` (seconds) say which limit and when to try again, where it told."""

    def __init__(self, message: str, *, limit: int | None = None,
                 remaining: int | None = None, window_seconds: int | None = None,
                 retry_after: float | None = None, source: str | None = None,
                 code: str | None = None, hint: str | None = None) -> None:
        self.limit = limit
        self.remaining = remaining
        self.window_seconds = window_seconds
        self.retry_after = retry_after
        self.source = source
        super().__init__(message, status=429, code=code, hint=hint)
