"""The registries :class:`registryproxy.RegistryProxy` plays: one mode per registry.

A mode is the list of behaviours (``modes_access.py``: auth, catalogs, tag lists;
``modes_traffic.py``: rate limits, redirects, Accept, deletes, uploads, error bodies)
that make the real distribution registry look like that registry, each citing its
row of ``/work/shared/docs/REGISTRIES.md``. :func:`make_mode` builds a fresh mode
(behaviours keep per-proxy state).

Not played: referrers (no facade operation reads them yet), Quay's schema 1
fallback (needs schema 1 signing), Zot's catalog filtered by access, Hub's bare-LF
headers (the stdlib server cannot send them).
"""

from __future__ import annotations

from collections.abc import Callable

from modes_access import (
    AcrCatalog,
    AcrTags,
    ArtifactoryTags,
    BasicAuth,
    BearerAuth,
    CatalogRefused,
    EcrTags,
    GhcrTags,
    NexusTags,
    QuayTags,
    catalog_401,
    ecr_token_expired,
    no_such_page,
)
from modes_traffic import (
    BlobRedirect,
    ChunkMinLength,
    DeleteRefused,
    EcrUploads,
    ExtraHeaders,
    HeadLengthDiffers,
    HubDelete,
    HubRateLimit,
    IndexNeedsOciAccept,
    ManifestNeedsMediaType,
    MonolithicSizeCap,
    MountUnknownSource,
    PatchRequired,
    PatchSizeCap,
    PlainTextErrors,
    SingleUseLocations,
    TagDelete,
    UnknownNotFound,
    ZotErrors,
    ecr_public_429,
    ghcr_429,
    hub_abuse_429,
)
from registryproxy import MIB, Mode

__all__ = ["make_mode", "MODES"]


# ================================================================ the modes


def _distribution() -> Mode:
    return Mode("distribution", "token", [], about="CNCF distribution 2.8 (pass-through)")


def _dockerhub() -> Mode:
    return Mode("dockerhub", "token", [
        BearerAuth("/token", "registry.docker.io", expired="bare401"),
        CatalogRefused(catalog_401("authentication required")),
        HubRateLimit(),
        IndexNeedsOciAccept(),
        BlobRedirect(),
        HubDelete(),
        MonolithicSizeCap(),
    ], rate_limited=hub_abuse_429, about="Docker Hub")


def _ghcr() -> Mode:
    return Mode("ghcr", "token", [
        BearerAuth("/token", "ghcr.io", ping_scope="repository:user/image:pull",
                   answer=("token",)),
        CatalogRefused(no_such_page),
        GhcrTags(),
        DeleteRefused(),
        PatchSizeCap(),
    ], rate_limited=ghcr_429, about="GitHub Container Registry")


def _quay() -> Mode:
    return Mode("quay", "token", [
        BearerAuth("/v2/auth", "quay.io", refuse_action="delete", delete_action="push"),
        QuayTags(),
        TagDelete(),
    ], about="Quay")


def _ecr() -> Mode:
    return Mode("ecr", "basic", [
        BasicAuth('Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",'
                  'service="ecr.amazonaws.com"', expired=ecr_token_expired),
        EcrTags(),
        EcrUploads(),
        ManifestNeedsMediaType(),
        BlobRedirect(),
    ], about="Amazon ECR")


def _ecr_public() -> Mode:
    return Mode("ecr-public", "token", [
        BearerAuth("/token/", "public.ecr.aws", answer=("token",)),
        EcrTags(default=1000),
    ], rate_limited=ecr_public_429, about="Amazon ECR Public")


def _gar() -> Mode:
    return Mode("gar", "token", [
        BearerAuth("/v2/token", "gcr.io", ping_service=False, quoted={"realm"}, post=False,
                   expired="bare401"),
        SingleUseLocations(),
    ], about="Google Artifact Registry")


def _acr() -> Mode:
    return Mode("acr", "token", [
        BearerAuth("/oauth2/token", "registrynb.azurecr.io", answer=("access_token",)),
        AcrCatalog(),
        AcrTags(),
    ], about="Azure Container Registry")


def _gitlab() -> Mode:
    return Mode("gitlab", "token", [
        BearerAuth("/jwt/auth", "container_registry"),
        CatalogRefused(catalog_401("authentication required")),
        TagDelete(),
    ], about="GitLab container registry")


def _harbor() -> Mode:
    return Mode("harbor", "token", [
        BearerAuth("/service/token", "harbor-registry"),
        CatalogRefused(catalog_401("unauthorized to list catalog: unauthorized to list "
                                   "catalog")),
        DeleteRefused(by_tag_only=True),
        MountUnknownSource(),
        UnknownNotFound(),
        HeadLengthDiffers(),
    ], about="Harbor")


def _artifactory() -> Mode:
    return Mode("artifactory", "basic", [
        BasicAuth('Basic realm="Artifactory Realm"'),
        ArtifactoryTags(),
        PatchRequired(),
        ExtraHeaders(X_JFrog_Version="Artifactory/7.77.5 77705900"),
    ], about="JFrog Artifactory")


def _zot() -> Mode:
    return Mode("zot", "token", [
        BearerAuth("/auth/token", "zot"),
        DeleteRefused(by_tag_only=True),
        ChunkMinLength(10 * MIB),
        ZotErrors(),
    ], about="Zot")


def _nexus() -> Mode:
    return Mode("nexus", "basic", [
        BasicAuth('BASIC realm="Sonatype Nexus Repository Manager"'),
        NexusTags(),
        PlainTextErrors(),
    ], about="Sonatype Nexus")


MODES: dict[str, Callable[[], Mode]] = {
    "distribution": _distribution, "dockerhub": _dockerhub, "ghcr": _ghcr, "quay": _quay,
    "ecr": _ecr, "ecr-public": _ecr_public, "gar": _gar, "acr": _acr, "gitlab": _gitlab,
    "harbor": _harbor, "artifactory": _artifactory, "zot": _zot, "nexus": _nexus,
}


def make_mode(name: str) -> Mode:
    """A fresh mode by name (see :data:`MODES`)."""
    try:
        return MODES[name]()
    except KeyError:
        raise ValueError(f"unknown registry mode {name!r}; known: {', '.join(MODES)}") from None
