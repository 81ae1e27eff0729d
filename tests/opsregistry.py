"""Test helpers for delete and retention: a registry of our own, and fast seeding.

The shared test registries must not be changed by config, so delete tests start their
own ``docker-registry serve`` (delete enabled or not) on a free loopback port, and seed
images straight through the API (one layer, one config per image, so each image has its
own ``created``), which is quick enough for hundreds of tags.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

from registry_nb.demo_ops import ScratchRegistry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = b"\x1f\x8b" + b"not really a layer, the registry does not care" * 4
LAYER_DIGEST = "sha256:" + hashlib.sha256(LAYER).hexdigest()
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)


#: ``docker-registry serve`` on 127.0.0.1 with ``delete.enabled`` as asked (the demo's
#: scratch registry: OwnRegistry(folder, delete=False)).
OwnRegistry = ScratchRegistry


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def push_image(client, repository: str, tags: list[str], created: datetime, *,
               label: str = "") -> str:
    """Push one small OCI image under ``tags``; returns its digest."""
    config = _canonical({"architecture": "amd64", "os": "linux",
                         "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "config": {"Labels": {"n": label or created.isoformat()}},
                         "rootfs": {"type": "layers", "diff_ids": [LAYER_DIGEST]}})
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_blob(repository, LAYER, LAYER_DIGEST, len(LAYER))
    client.upload_blob(repository, config, config_digest, len(config))
    manifest = _canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": LAYER_DIGEST, "size": len(LAYER)}],
    })
    digest = ""
    for tag in tags:
        digest = client.put_manifest(repository, tag, manifest, OCI_MANIFEST)
    return digest


def push_index(client, repository: str, tag: str, children: list[str]) -> str:
    """An OCI index over ``children`` (manifest digests already in ``repository``)."""
    entries = []
    for i, digest in enumerate(children):
        raw_size = client.head_manifest(repository, digest).size
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": raw_size,
                        "platform": {"os": "linux",
                                     "architecture": ["amd64", "arm64", "s390x"][i % 3]}})
    raw = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return client.put_manifest(repository, tag, raw, OCI_INDEX)


def seed_days(client, repository: str, count: int) -> dict[str, str]:
    """``count`` images tagged ``t000``…, created one day apart (t000 oldest)."""
    return {f"t{i:03d}": push_image(client, repository, [f"t{i:03d}"],
                                    BASE_TIME + timedelta(days=i)) for i in range(count)}
