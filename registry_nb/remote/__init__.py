"""The remote layer: one registry's HTTP API, as the distribution spec and real registries speak it.

:class:`~registry_nb.remote.transport.Transport` is the request pipeline (TLS, retries,
redirects, limits) with the auth flow of :mod:`~registry_nb.remote.auth` inside it;
:class:`~registry_nb.remote.distribution.RegistryClient` is the API (catalog, tags,
manifests, blobs, with :mod:`~registry_nb.remote.uploads`); credentials come from
:mod:`~registry_nb.remote.credentials` (the docker config and its helpers) and verified
content is kept by :mod:`~registry_nb.remote.cache`. Needs ``requests``; never pandas,
docker-py or ipywidgets.
"""

from __future__ import annotations

from .auth import (
    CATALOG_SCOPE,
    Challenge,
    RegistryAuth,
    normalize_scopes,
    parse_www_authenticate,
    repository_scope,
)
from .cache import CachedContent, ContentCache
from .credentials import (
    DOCKER_HUB_CONFIG_KEY,
    DockerConfig,
    RegistryCredentials,
    credentials_from_docker_config,
    docker_config_path,
    load_docker_config,
)
from .distribution import ManifestHead, RegistryClient
from .responses import error_from_response, raise_for_status
from .transport import Transport
from .uploads import BlobProgress, BlobUploader

__all__ = [
    "CATALOG_SCOPE", "DOCKER_HUB_CONFIG_KEY", "BlobProgress", "BlobUploader", "CachedContent",
    "Challenge", "ContentCache", "DockerConfig", "ManifestHead", "RegistryAuth",
    "RegistryClient", "RegistryCredentials", "Transport", "credentials_from_docker_config",
    "docker_config_path", "error_from_response", "load_docker_config", "normalize_scopes",
    "parse_www_authenticate", "raise_for_status", "repository_scope",
]
