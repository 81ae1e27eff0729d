"""Test helpers that make and push images WITHOUT registry_nb's own code.

The project's client is what the tests check, so test images are written here
by hand (OCI image layout, deterministic gzip tar layers) and pushed or
inspected with skopeo, the independent oracle.

Import from tests as ``from helpers import ...`` (conftest puts this folder on
``sys.path``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
FIXED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
FIXED_CREATED = "2023-11-14T22:13:20Z"


# --------------------------------------------------------------------------
# what conftest hands to tests
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryService:
    """One local test registry, as described in services.json."""

    name: str  # "open" | "basic" | "token"
    host: str  # "127.0.0.1:5000"
    url: str  # "http://127.0.0.1:5000"
    storage: Path  # the filesystem driver's rootdirectory
    auth: str  # "none" | "basic" | "token"
    username: str | None = None
    password: str | None = None
    realm: str | None = None  # Basic realm name, or the token endpoint URL
    service: str | None = None  # token auth: the registry's service name
    users: dict[str, str] = field(default_factory=dict)  # token auth: user -> password
    stats_url: str | None = None  # token auth: GET -> JSON counters
    expires_in: int | None = None  # token auth: token lifetime in seconds

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RegistryService:
        return cls(
            name=data["name"], host=data["host"], url=data["url"],
            storage=Path(data["storage"]), auth=data["auth"],
            username=data.get("username"), password=data.get("password"),
            realm=data.get("realm"), service=data.get("service"),
            users=dict(data.get("users") or {}), stats_url=data.get("stats_url"),
            expires_in=data.get("expires_in"),
        )

    @property
    def creds(self) -> str | None:
        """``"user:password"`` for skopeo, or None for the open registry."""
        if self.username is None:
            return None
        return f"{self.username}:{self.password}"

    def ref(self, repo: str, tag_or_digest: str = "latest") -> str:
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def blob_path(self, digest: str) -> Path:
        """Where the registry keeps a blob's bytes on disk (to corrupt it)."""
        algo, hexa = digest.split(":", 1)
        return (self.storage / "docker/registry/v2/blobs" / algo / hexa[:2] / hexa / "data")

    def repo_path(self, repo: str) -> Path:
        return self.storage / "docker/registry/v2/repositories" / repo


# --------------------------------------------------------------------------
# OCI image layout
# --------------------------------------------------------------------------
def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def make_tar(files: dict[str, bytes | tuple[bytes, int]]) -> bytes:
    """Uncompressed tar: sorted entries, parent directories, fixed mtimes, root owner.

    A value may be ``(content, mode)`` to set the file mode (default 0o644).
    """
    entries: dict[str, tuple[bytes, int] | None] = {}
    for raw_path, value in files.items():
        path = raw_path.strip("/")
        content, mode = value if isinstance(value, tuple) else (value, 0o644)
        parts = path.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), None)
        entries[path] = (content, mode)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            info = tarfile.TarInfo(path)
            info.mtime = FIXED_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            item = entries[path]
            if item is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tar.addfile(info)
            else:
                info.mode = item[1]
                info.size = len(item[0])
                tar.addfile(info, io.BytesIO(item[0]))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip (no name, mtime 0)."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(data)
    return out.getvalue()


@dataclass
class LayerInfo:
    digest: str  # of the gzip blob
    diff_id: str  # of the uncompressed tar
    size: int  # of the gzip blob
    files: list[str]


@dataclass
class OciImage:
    """What :func:`make_oci_layout` wrote."""

    layout: Path
    tag: str
    manifest_digest: str
    manifest: dict
    manifest_bytes: bytes
    config_digest: str
    config: dict
    layers: list[LayerInfo]

    @property
    def size(self) -> int:
        """Manifest + config + layer blob sizes, in bytes."""
        return (len(self.manifest_bytes) + self.manifest["config"]["size"]
                + sum(layer.size for layer in self.layers))


def _write_blob(layout: Path, data: bytes) -> str:
    digest = _sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return digest


def make_oci_layout(
    layout_dir: str | Path,
    files: dict[str, bytes | tuple[bytes, int]] | None = None,
    tag: str = "latest",
    config_overrides: dict | None = None,
    layers: int = 1,
    annotations: dict[str, str] | None = None,
) -> OciImage:
    """Write (or add to) an OCI image layout holding one image tagged *tag*.

    *files* (path -> bytes, or (bytes, mode)) are spread round-robin over
    *layers* gzip tar layers in sorted path order; a layer that would be empty
    gets a ``layer-N.txt`` file so every layer differs. Output is
    deterministic: same arguments, same digests. *config_overrides* is merged
    deeply into the image config (e.g. ``{"config": {"Labels": {...}}}``).
    An existing ``index.json`` keeps its other tags.
    """
    layout = Path(layout_dir)
    layout.mkdir(parents=True, exist_ok=True)
    files = dict(files if files is not None else {"hello.txt": f"hello {tag}\n".encode()})
    if layers < 1:
        raise ValueError("layers must be >= 1")
    names = sorted(files)
    groups: list[dict] = [{} for _ in range(layers)]
    for i, name in enumerate(names):
        groups[i % layers][name] = files[name]
    for i, group in enumerate(groups):
        if not group:
            group[f"layer-{i}.txt"] = f"layer {i}\n".encode()

    layer_infos, descriptors, history = [], [], []
    for i, group in enumerate(groups):
        tar = make_tar(group)
        blob = gzip_bytes(tar)
        digest = _write_blob(layout, blob)
        layer_infos.append(LayerInfo(digest, _sha256(tar), len(blob), sorted(group)))
        descriptors.append({"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": len(blob)})
        history.append({"created": FIXED_CREATED,
                        "created_by": f"registry_nb tests: layer {i} ({len(group)} files)"})

    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": FIXED_CREATED,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [li.diff_id for li in layer_infos]},
        "history": history,
    }
    if config_overrides:
        config = _merge(config, config_overrides)
    config_bytes = _canonical(config)
    config_digest = _write_blob(layout, config_bytes)

    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": descriptors,
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    manifest_bytes = _canonical(manifest)
    manifest_digest = _write_blob(layout, manifest_bytes)

    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    index_path = layout / "index.json"
    index = (json.loads(index_path.read_text()) if index_path.exists()
             else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
    index["manifests"] = [m for m in index.get("manifests", [])
                          if m.get("annotations", {}).get(REF_NAME) != tag]
    index["manifests"].append({
        "mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
        "annotations": {REF_NAME: tag},
    })
    index_path.write_bytes(_canonical(index))
    return OciImage(layout, tag, manifest_digest, manifest, manifest_bytes, config_digest,
                    config, layer_infos)


# --------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------
def _creds_arg(creds: str | tuple[str, str] | None) -> str | None:
    if creds is None:
        return None
    if isinstance(creds, tuple):
        return f"{creds[0]}:{creds[1]}"
    return creds


def _docker_ref(ref: str) -> str:
    return ref if ref.startswith("docker://") else f"docker://{ref}"


def skopeo(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run skopeo (insecure policy, no TLS), raising with its stderr on failure."""
    cmd = ["skopeo", "--insecure-policy", *args]
    res = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n"
                           f"{res.stderr.decode(errors='replace')}")
    return res


def push_layout_with_skopeo(
    layout_dir: str | Path,
    tag: str,
    dest_ref: str,
    creds: str | tuple[str, str] | None = None,
) -> None:
    """``skopeo copy oci:DIR:TAG docker://DEST`` over plain HTTP, keeping digests."""
    args = ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests"]
    c = _creds_arg(creds)
    if c:
        args += ["--dest-creds", c]
    skopeo(*args, f"oci:{layout_dir}:{tag}", _docker_ref(dest_ref))


def skopeo_raw_manifest(ref: str, creds: str | tuple[str, str] | None = None) -> bytes:
    """The manifest bytes the registry serves for *ref* (``host/repo:tag``)."""
    args = ["inspect", "--raw", "--tls-verify=false"]
    c = _creds_arg(creds)
    if c:
        args += ["--creds", c]
    return skopeo(*args, _docker_ref(ref)).stdout


def skopeo_digest(ref: str, creds: str | tuple[str, str] | None = None) -> str:
    """sha256 digest of the manifest the registry serves for *ref*."""
    return _sha256(skopeo_raw_manifest(ref, creds))


def seed_image(
    registry: RegistryService | str,
    repo: str,
    tag: str = "latest",
    files: dict[str, bytes | tuple[bytes, int]] | None = None,
    creds: str | tuple[str, str] | None = None,
    *,
    layout_dir: str | Path | None = None,
    layers: int = 1,
    config_overrides: dict | None = None,
) -> str:
    """Make an OCI image and push it to ``registry/repo:tag``; returns its digest.

    *registry* is a :class:`RegistryService` (its own credentials are used when
    *creds* is None) or a ``host:port`` string. The digest returned is what
    skopeo reads back from the registry (and equals the layout's).
    """
    import tempfile

    if isinstance(registry, RegistryService):
        host = registry.host
        creds = creds if creds is not None else registry.creds
    else:
        host = registry
    ref = f"{host}/{repo}:{tag}"
    with tempfile.TemporaryDirectory(prefix="seed-") as tmp:
        layout = Path(layout_dir) if layout_dir is not None else Path(tmp) / "layout"
        image = make_oci_layout(layout, files, tag=tag, config_overrides=config_overrides,
                                layers=layers)
        push_layout_with_skopeo(layout, tag, ref, creds)
    digest = skopeo_digest(ref, creds)
    if digest != image.manifest_digest:
        raise AssertionError(f"registry serves {digest} for {ref}, layout had "
                             f"{image.manifest_digest}")
    return digest


def seed_index(
    registry: RegistryService,
    repo: str,
    tag: str,
    platforms: dict[str, dict[str, bytes]],
) -> dict[str, str]:
    """Push an OCI index to ``registry/repo:tag`` with one image per platform.

    *platforms* maps ``os/arch[/variant]`` to that image's files. Returns the
    digests: ``{"index": …, "<platform>": …}``, read back with skopeo.
    """
    import tempfile

    digests: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="seed-index-") as tmp:
        layout = Path(tmp) / "layout"
        entries = []
        for name, files in platforms.items():
            os_name, arch, *variant = name.split("/")
            platform = {"os": os_name, "architecture": arch,
                        **({"variant": variant[0]} if variant else {})}
            image = make_oci_layout(layout, files, tag=name.replace("/", "-"),
                                    config_overrides=platform)
            entries.append({"mediaType": OCI_MANIFEST, "digest": image.manifest_digest,
                            "size": len(image.manifest_bytes), "platform": platform})
            digests[name] = image.manifest_digest
        index_bytes = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX,
                                  "manifests": entries})
        index_digest = _write_blob(layout, index_bytes)
        top_path = layout / "index.json"
        top = json.loads(top_path.read_text())
        top["manifests"].append({"mediaType": OCI_INDEX, "digest": index_digest,
                                 "size": len(index_bytes), "annotations": {REF_NAME: tag}})
        top_path.write_bytes(_canonical(top))
        args = ["copy", "--quiet", "--all", "--dest-tls-verify=false", "--preserve-digests"]
        c = _creds_arg(registry.creds)
        if c:
            args += ["--dest-creds", c]
        ref = registry.ref(repo, tag)
        skopeo(*args, f"oci:{layout}:{tag}", _docker_ref(ref))
    digests["index"] = skopeo_digest(ref, registry.creds)
    if digests["index"] != index_digest:
        raise AssertionError(f"registry serves {digests['index']} for {ref}, "
                             f"layout had {index_digest}")
    return digests


# --------------------------------------------------------------------------
# docker build context and token helpers
# --------------------------------------------------------------------------
BUSYBOX = Path("/bin/busybox")


def busybox_build_context(
    context_dir: str | Path, extra_lines: list[str] | tuple[str, ...] = ()
) -> Path:
    """A build context: ``FROM scratch`` + static busybox + ``--install -s /bin``.

    *extra_lines* are appended to the Dockerfile (e.g. ``RUN echo hi > /x``).
    Returns the context folder.
    """
    ctx = Path(context_dir)
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, ctx / "busybox")
    lines = [
        "FROM scratch",
        "COPY busybox /bin/busybox",
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
        *extra_lines,
    ]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    return ctx


def get_token(
    registry: RegistryService,
    *scopes: str,
    username: str | None = None,
    password: str | None = None,
    anonymous: bool = False,
) -> requests.Response:
    """GET the token service directly (default user: the registry's alice).

    Returns the raw response; ``.json()["token"]`` is the JWT.
    """
    auth = None
    if not anonymous:
        user = username or registry.username
        pw = password if password is not None else registry.users.get(user, registry.password)
        auth = (user, pw)
    params = [("service", registry.service)] + [("scope", s) for s in scopes]
    return _session().get(registry.realm, params=params, auth=auth, timeout=10)


def jwt_claims(token: str) -> dict:
    """The (unverified) claims of a JWT."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def token_stats(registry: RegistryService) -> dict:
    """The token service's counters (``tokens_issued``, ``by_user``, ...)."""
    return _session().get(registry.stats_url, timeout=10).json()


def _session() -> requests.Session:
    """A session that ignores proxy / CA environment variables (loopback only)."""
    s = requests.Session()
    s.trust_env = False
    return s
