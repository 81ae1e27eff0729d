"""Behaviours of the registries the test proxy plays: rate limits, redirects, Accept,
deletes, uploads and odd answers (see ``modes_access.py`` for how they are cited).
"""

from __future__ import annotations

import json
import shutil
import threading

from registryproxy import (
    MIB,
    Behaviour,
    CdnServer,
    Exchange,
    Headers,
    Reply,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", OCI_INDEX,
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"])


# ================================================================ rate limits


class HubRateLimit(Behaviour):
    """``ratelimit-limit``/``ratelimit-remaining``/``docker-ratelimit-source`` on
    manifest GET and HEAD; a GET counts, a HEAD does not; at zero, the pull-limit 429.

    REGISTRIES.md, Docker Hub "Rate limits" (gist jeversol/369009aa, ghdl/docker#30,
    ScribeMD/docker-cache#829). The quota is configurable (``limit``).
    """

    def __init__(self, limit: int = 100, window: int = 21600) -> None:
        self.limit = limit
        self.window = window
        self.remaining = limit
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.remaining = self.limit

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind == "manifest" and ex.method == "GET" and self.remaining <= 0:
            return Reply.errors(429, "TOOMANYREQUESTS", "You have reached your pull rate limit. "
                                "You may increase the limit by authenticating and upgrading: "
                                "https://www.docker.com/increase-rate-limit")
        return None

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.kind != "manifest" or ex.method not in ("GET", "HEAD") or reply.status >= 400:
            return reply
        with self._lock:
            if ex.method == "GET":
                self.remaining -= 1
            remaining = max(self.remaining, 0)
        reply.headers["ratelimit-limit"] = f"{self.limit};w={self.window}"
        reply.headers["ratelimit-remaining"] = f"{remaining};w={self.window}"
        reply.headers["docker-ratelimit-source"] = "127.0.0.1"
        return reply


def hub_abuse_429() -> Reply:
    """REGISTRIES.md, Docker Hub "Rate limits": the abuse limiter's ``text/plain``
    "Too Many Requests (HAP429)" with ``Retry-After: 60`` (docker/hub-feedback#1907)."""
    return Reply.text(429, "Too Many Requests (HAP429).\n", Retry_After="60")


def ghcr_429() -> Reply:
    """REGISTRIES.md, GHCR "Rate limits": ``toomanyrequests: retry-after: 1.16676ms,
    allowed: 44000/minute`` in the body, no header (falcosecurity/plugins#1069)."""
    return Reply.text(429, "toomanyrequests: retry-after: 1.16676ms, allowed: 44000/minute\n")


def ecr_public_429() -> Reply:
    """REGISTRIES.md, ECR Public "Rate limits": ``toomanyrequests: Rate exceeded``
    (aws/aws-lambda-web-adapter#429)."""
    return Reply.errors(429, "TOOMANYREQUESTS", "Rate exceeded")


# ================================================================ redirects, Accept


class BlobRedirect(Behaviour):
    """Blob GETs answer 307 to a second loopback host (the CDN), which refuses a
    request that carries ``Authorization``.

    REGISTRIES.md, Docker Hub "Redirects" (``production.cloudflare.docker.com``;
    Hub-API), ECR layers from S3 (awsdocs/amazon-ecr-user-guide#24); section 3.5.
    """

    cdn: CdnServer

    def attach(self, proxy) -> None:  # type: ignore[no-untyped-def]
        super().attach(proxy)
        self.cdn = CdnServer(proxy)

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind != "blob" or ex.method != "GET":
            return None
        head = self.proxy.forward(ex, method="HEAD")
        if head.status != 200:
            return None  # the registry's own error (or challenge)
        return Reply.of(307, Location=self.cdn.sign(ex))

    def close(self) -> None:
        self.cdn.close()


class IndexNeedsOciAccept(Behaviour):
    """An OCI index asked for without the OCI index type in ``Accept`` is 404.

    REGISTRIES.md, Docker Hub "Redirects / quirks": 404 ``MANIFEST_UNKNOWN "OCI index
    found, but accept header does not support OCI indexes"`` (NotGlop/docker-drag#32).
    """

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.kind != "manifest" or ex.method not in ("GET", "HEAD") or reply.status != 200:
            return reply
        content_type = (reply.headers.get("Content-Type") or "").split(";")[0].strip()
        if content_type == OCI_INDEX and OCI_INDEX not in (ex.headers.get("Accept") or ""):
            return Reply.errors(404, "MANIFEST_UNKNOWN", "OCI index found, but accept header "
                                "does not support OCI indexes")
        return reply


# ================================================================ delete


def _tag_digest(proxy, repository: str, tag: str) -> str | None:  # type: ignore[no-untyped-def]
    link = proxy.upstream.tag_link(repository, tag)
    return link.read_text().strip() if link.exists() else None


def _tags_on(proxy, repository: str, digest: str) -> list[str]:  # type: ignore[no-untyped-def]
    tags_dir = (proxy.upstream.storage / "docker/registry/v2/repositories" / repository
                / "_manifests/tags")
    if not tags_dir.is_dir():
        return []
    return [t.name for t in tags_dir.iterdir() if _tag_digest(proxy, repository, t.name) == digest]


class DeleteRefused(Behaviour):
    """Manifest DELETE refused: always (GHCR 405 ``UNSUPPORTED``; skopeo#1880,
    cosign#3434), or only by tag (Harbor ``UNSUPPORTED``, goharbor/harbor#11971;
    Zot digest only, zot#67).

    REGISTRIES.md, "Delete" column.
    """

    def __init__(self, *, by_tag_only: bool = False) -> None:
        self.by_tag_only = by_tag_only

    def before(self, ex: Exchange) -> Reply | None:
        if ex.method != "DELETE" or ex.kind != "manifest":
            return None
        if self.by_tag_only and ex.is_digest:
            return None
        return Reply.errors(405, "UNSUPPORTED", "The operation is unsupported.")


class HubDelete(Behaviour):
    """Delete by digest only, and only when untagged (else 403); a tag gets 405.

    REGISTRIES.md, Docker Hub "Delete" (Hub-API).
    """

    def before(self, ex: Exchange) -> Reply | None:
        if ex.method != "DELETE" or ex.kind != "manifest":
            return None
        if not ex.is_digest:
            return Reply.errors(405, "UNSUPPORTED", "deleting by tag is not supported")
        if _tags_on(self.proxy, ex.name or "", ex.ref or ""):
            return Reply.errors(403, "DENIED", "the manifest is tagged; remove its tags first")
        return None


class TagDelete(Behaviour):
    """A tag can be deleted alone: ``DELETE /v2/<n>/manifests/<tag>`` (Quay, quay/quay
    #3128; GitLab) and ``DELETE /v2/<n>/tags/reference/<tag>`` (GitLab, werf/werf#2603).

    REGISTRIES.md, "Delete" column. Played by removing the tag from the registry's
    storage (distribution has no tag delete).
    """

    def before(self, ex: Exchange) -> Reply | None:
        by_tag = ex.kind in ("manifest", "tagref") and not ex.is_digest
        if ex.method != "DELETE" or not by_tag or not ex.ref:
            return None
        # A DELETE carries no Accept; distribution answers 404 for an OCI manifest
        # asked without its type, so the check names every manifest type.
        headers = Headers(ex.headers)
        headers.put("Accept", MANIFEST_TYPES)
        check = self.proxy.forward(ex, method="HEAD", target=f"/v2/{ex.name}/manifests/{ex.ref}",
                                   headers=headers, body=b"")
        if check.status != 200:
            return check
        folder = self.proxy.upstream.tag_link(ex.name or "", ex.ref).parent.parent
        shutil.rmtree(folder, ignore_errors=True)
        return Reply.of(202)


# ================================================================ uploads


class EcrUploads(Behaviour):
    """A PATCH answers 201 (not 202) and its ``Range`` stays at the first chunk's end:
    chunks after the first are discarded.

    REGISTRIES.md, ECR "Redirects / quirks" (aws/containers-roadmap#2831, regclient
    blob.go, openai/tart#273) and section 2, item 14.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, Reply] = {}

    def reset(self) -> None:
        self.sessions.clear()

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind == "upload" and ex.method == "PATCH" and ex.ref in self.sessions:
            first = self.sessions[ex.ref]
            return Reply(201, Headers(first.headers))
        return None

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.kind == "upload" and ex.method == "PATCH" and reply.status == 202 and ex.ref:
            reply.status = 201
            self.sessions[ex.ref] = reply
        return reply


class PatchSizeCap(Behaviour):
    """A PATCH body over 4 MiB gets 416 ``REQUESTED_RANGE_NOT_SATISFIABLE``; the upload
    session lives on.

    REGISTRIES.md, GHCR "Redirects / quirks" (ocx-sh/ocx#237, oras-project/
    rust-oci-client#35).
    """

    def __init__(self, cap: int = 4 * MIB) -> None:
        self.cap = cap

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind == "upload" and ex.method == "PATCH" and len(ex.body) > self.cap:
            return Reply.errors(416, "REQUESTED_RANGE_NOT_SATISFIABLE",
                                "the request body is too large and exceeds the maximum "
                                f"permissible limit of {self.cap / MIB:.2f}MiB")
        return None


class SingleUseLocations(Behaviour):
    """Each PATCH answers 204 (not 202) with a new ``Location``; a used one is dead.

    REGISTRIES.md, GAR "Redirects / quirks" (containerd/containerd#1318).
    """

    def __init__(self) -> None:
        self.used: set[str] = set()

    def reset(self) -> None:
        self.used.clear()

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind == "upload" and ex.ref and ex.target in self.used:
            return Reply.errors(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        return None

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.kind == "upload" and ex.ref and ex.method in ("PATCH", "PUT"):
            self.used.add(ex.target)
            if ex.method == "PATCH" and reply.status == 202:
                reply.status = 204
        return reply


class PatchRequired(Behaviour):
    """A monolithic upload (POST, then PUT with the whole body) is refused: the
    registry requires PATCH.

    REGISTRIES.md, Artifactory "Redirects / quirks" (containerd/containerd#3533,
    RTFACT-19344). The refusal's shape is unconf.: 400 ``UNSUPPORTED``.
    """

    def __init__(self) -> None:
        self.patched: set[str] = set()

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind != "upload" or not ex.ref:
            return None
        if ex.method == "PATCH":
            self.patched.add(ex.ref)
        elif ex.method == "PUT" and ex.body and ex.ref not in self.patched:
            return Reply.errors(400, "UNSUPPORTED", "monolithic upload is not supported; "
                                "upload the blob in chunks (PATCH)")
        return None


class MonolithicSizeCap(Behaviour):
    """A large monolithic PUT gets a bare 400.

    REGISTRIES.md, Docker Hub "Redirects / quirks" (atlanhq/application-sdk#2020, a
    ~100 MB layer). The size is unconf.: 5 MiB here.
    """

    def __init__(self, cap: int = 5 * MIB) -> None:
        self.cap = cap

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind == "upload" and ex.method == "PUT" and len(ex.body) > self.cap:
            return Reply.of(400)
        return None


class ChunkMinLength(Behaviour):
    """The upload POST answers ``OCI-Chunk-Min-Length``.

    REGISTRIES.md, "What well-behaved clients do" (opencontainers/distribution-spec
    #391, #481; regclient/regclient#394). Which registries send it: unconf.
    """

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.kind == "upload" and ex.method == "POST" and reply.status == 202:
            reply.headers["OCI-Chunk-Min-Length"] = str(self.minimum)
        return reply


class MountUnknownSource(Behaviour):
    """A mount whose ``from`` repository the registry does not know gets 401, not 202.

    REGISTRIES.md, Harbor "Redirects / quirks" (goharbor/harbor#17097).
    """

    def before(self, ex: Exchange) -> Reply | None:
        source = ex.param("from")
        if ex.kind != "upload" or ex.method != "POST" or not source:
            return None
        probe = self.proxy.forward(ex, method="GET", target=f"/v2/{source}/tags/list", body=b"")
        if probe.status != 404:
            return None
        return Reply.errors(401, "UNAUTHORIZED", "unauthorized to access repository: "
                            f"{source}, action: pull", WWW_Authenticate=(
                                f'Bearer realm="x",service="x",scope="repository:{source}:pull",'
                                'error="insufficient_scope"'))


class ManifestNeedsMediaType(Behaviour):
    """An OCI manifest without a top-level ``mediaType`` gets ``UNSUPPORTED "Invalid
    JSON syntax"``.

    REGISTRIES.md, ECR "Redirects / quirks" (c/image dest.go).
    """

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind != "manifest" or ex.method != "PUT":
            return None
        try:
            data = json.loads(ex.body)
        except ValueError:
            return None
        if isinstance(data, dict) and "mediaType" not in data:
            return Reply.errors(400, "UNSUPPORTED", "Invalid JSON syntax")
        return None


# ================================================================ odd answers


class UnknownNotFound(Behaviour):
    """A 404 comes back as code ``UNKNOWN``, "… not found".

    REGISTRIES.md, Harbor "Redirects / quirks" (c/image image.go).
    """

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if reply.status != 404 or ex.method == "HEAD" or not reply.error_code():
            return reply
        what = {"manifest": f"artifact {ex.name}:{ex.ref}", "tags": f"repository {ex.name}",
                "blob": f"blob {ex.ref}"}.get(ex.kind or "", ex.path)
        return Reply.errors(404, "UNKNOWN", f"{what} not found")


class ZotErrors(Behaviour):
    """Errors are ``{"error": "…"}``, not the spec's ``{"errors": [...]}``.

    REGISTRIES.md, Zot "Auth" (project-zot/zot#3966).
    """

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if reply.status < 400 or not reply.error_code():
            return reply
        out = Reply.json(reply.status, {"error": reply.error_message()})
        out.headers.update({k: v for k, v in reply.headers.items()
                            if k.lower() not in ("content-type",)})
        out.headers.put("Content-Type", "application/json")
        return out


class PlainTextErrors(Behaviour):
    """Errors in plain text.

    REGISTRIES.md, section 3.10 ("plain text" among the non-OCI error bodies); Docker
    Hub's "404 page not found" (docker/hub-feedback#1693). Which registries: unconf.
    """

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if reply.status < 400 or not reply.error_code():
            return reply
        text = f"{reply.error_code().lower()}: {reply.error_message()}\n"  # type: ignore[union-attr]
        out = Reply.text(reply.status, text)
        for key, value in reply.headers.items():
            if key.lower() != "content-type":
                out.headers[key] = value
        return out


class HeadLengthDiffers(Behaviour):
    """HEAD and GET of a manifest give different ``Content-Length``.

    REGISTRIES.md, Harbor "Redirects / quirks" (oras-go). By how much: unconf.
    """

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if ex.kind == "manifest" and ex.method == "HEAD" and reply.status == 200:
            length = reply.headers.get("Content-Length")
            if length and length.isdigit():
                reply.headers.put("Content-Length", str(int(length) + 7))
        return reply


class ExtraHeaders(Behaviour):
    """Headers on every answer (Artifactory's ``X-JFrog-Version``, by which clients
    detect it; REGISTRIES.md, Artifactory "Auth", renovate artifactory.ts)."""

    def __init__(self, **headers: str) -> None:
        self.headers = {k.replace("_", "-"): v for k, v in headers.items()}

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        reply.headers.update(self.headers)
        return reply
