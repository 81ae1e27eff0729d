"""TLS: a real distribution registry served over HTTPS with a self-signed CA.

The fixture makes a CA and a server certificate for ``127.0.0.1`` with
``cryptography``, starts ``docker-registry serve`` with ``http.tls`` on a free
loopback port, and stops it afterwards. The registry is refused by default (its
CA is unknown: :class:`InsecureRegistryError` with a hint naming ``ca_bundle=``
and ``insecure=True``), accepted with ``ca_bundle=`` and with ``insecure=True``,
also when ``REQUESTS_CA_BUNDLE`` names another bundle. Plain HTTP is refused for
non-loopback hosts unless ``insecure=True`` (a decision made before any
connection).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helpers import RegistryService, make_oci_layout

from registry_nb import ContainerRegistry
from registry_nb.errors import (
    InsecureRegistryError,
    RegistryError,
    RegistryUnavailableError,
)
from registry_nb.images.layout import OCILayout
from registry_nb.remote.transport import Transport

START_TIMEOUT = 20.0

pytestmark = pytest.mark.usefixtures("docker_config_dir")


@dataclass
class TLSRegistry:
    url: str  # https://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT
    port: int
    ca: Path  # PEM of the CA that signed the server certificate
    other_ca: Path  # PEM of an unrelated CA
    log: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _server_cert(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
                 ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for the IP address 127.0.0.1 only (not for the name localhost)."""
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(_name("registry-nb TLS test"))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(port: int, ca: Path, process: subprocess.Popen, log: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited ({process.returncode}):\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if tls.recv(64).startswith(b"HTTP/1.0 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not serve TLS on {port} within {START_TIMEOUT} s")


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRegistry]:
    """``docker-registry serve`` with http.tls on a free 127.0.0.1 port; stopped afterwards."""
    folder = tmp_path_factory.mktemp("tls-registry")
    ca, ca_key = _ca("registry-nb test CA")
    other, _ = _ca("registry-nb unrelated CA")
    cert, key = _server_cert(ca, ca_key)
    (folder / "ca.pem").write_bytes(_pem(ca))
    (folder / "other-ca.pem").write_bytes(_pem(other))
    (folder / "server.pem").write_bytes(_pem(cert))
    (folder / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    port = _free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16),
                 "tls": {"certificate": str(folder / "server.pem"),
                         "key": str(folder / "server.key")}},
    }
    (folder / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = folder / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")],
                                   stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    try:
        _wait_until_serving(port, folder / "ca.pem", process, log)
        yield TLSRegistry(f"https://127.0.0.1:{port}", f"127.0.0.1:{port}", port,
                          folder / "ca.pem", folder / "other-ca.pem", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    path = tmp_path / "layout"
    make_oci_layout(path, {"tls.txt": os.urandom(2000)}, tag="v1")
    return path


def _round_trip(reg: ContainerRegistry, layout: Path, tmp_path: Path) -> None:
    """Push, list, describe, copy and save through ``reg``; digests must hold."""
    repo = f"test/tls-{secrets.token_hex(3)}"
    digest = OCILayout(layout).resolve("v1").digest
    assert reg.load_image(layout, repo, "v1")["digest"] == digest
    assert [r["tag"] for r in reg.list_registry_images(repo)] == ["v1"]
    assert reg.describe_image(repo, "v1").digest == digest
    frame = reg.registry_images_frame(repo)
    assert frame["digest"].tolist() == [digest] and frame["error"].isna().all()
    copied = reg.copy_image(f"{reg.registry_host}/{repo}:v1", f"{reg.registry_host}/{repo}-b:v1")
    assert copied["digest"] == digest and copied["mounted_blobs"] == copied["blobs"]
    saved = reg.save_image(repo, "v1", tmp_path / "saved")
    assert OCILayout(tmp_path / "saved").get_manifest("v1").digest == saved["digest"] == digest


# ------------------------------------------------------------------ HTTPS


def test_unknown_ca_is_refused_by_default(tls_registry: TLSRegistry,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # requests would let REQUESTS_CA_BUNDLE decide; it names the system bundle here
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    for options in ({}, {"ca_bundle": str(tls_registry.other_ca)}):
        reg = ContainerRegistry(tls_registry.url, **options)
        started = time.monotonic()
        with pytest.raises(InsecureRegistryError) as info:
            reg.list_registry_images("test/anything")
        assert time.monotonic() - started < 10
        text = str(info.value)
        assert "could not be verified" in text
        assert "ca_bundle=" in text and "insecure=True" in text
        reg.close()


def test_accepted_with_the_ca_bundle(tls_registry: TLSRegistry, layout: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().openssl_cafile)
    with ContainerRegistry(tls_registry.url, ca_bundle=str(tls_registry.ca)) as reg:
        assert reg.client.transport.base_url == tls_registry.url
        assert reg.client.ping()["status"] == 200
        _round_trip(reg, layout, tmp_path)


def test_accepted_with_insecure(tls_registry: TLSRegistry, layout: Path,
                                tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ContainerRegistry(tls_registry.url, insecure=True) as reg:
            assert reg.client.transport.base_url == tls_registry.url  # still TLS, unverified
            _round_trip(reg, layout, tmp_path)
    assert any("Unverified HTTPS" in str(w.message) for w in caught)


def test_the_certificate_must_name_the_host(tls_registry: TLSRegistry) -> None:
    """The CA is right but the certificate is for 127.0.0.1, not localhost."""
    with ContainerRegistry(f"https://localhost:{tls_registry.port}",
                           ca_bundle=str(tls_registry.ca)) as reg:
        with pytest.raises(InsecureRegistryError, match="could not be verified"):
            reg.client.ping()


def test_https_to_a_plain_http_registry(open_registry: RegistryService) -> None:
    with ContainerRegistry(f"https://{open_registry.host}") as reg:
        with pytest.raises((RegistryUnavailableError, InsecureRegistryError)) as info:
            reg.client.ping()
    assert "insecure=True" in str(info.value)


def test_plain_http_to_the_tls_registry_is_a_typed_error(tls_registry: TLSRegistry) -> None:
    """A loopback host without a scheme means plain HTTP; the TLS port answers 400."""
    with ContainerRegistry(tls_registry.host) as reg:
        assert reg.client.transport.base_url == f"http://{tls_registry.host}"
        with pytest.raises(RegistryError) as info:
            reg.client.ping()
    assert "https://" in str(info.value)


# ------------------------------------------------------------------ plain HTTP decisions


@pytest.mark.parametrize("url", ["http://registry.example.com", "http://registry.example.com:5000",
                                 "http://10.1.2.3:5000", "http://192.168.0.10",
                                 "http://[2001:db8::1]:5000", "http://localhost.example.com"])
def test_plain_http_refused_for_non_loopback_hosts(url: str) -> None:
    with pytest.raises(InsecureRegistryError) as info:
        Transport(url, use_docker_config=False)
    assert "insecure=True" in str(info.value)
    reg = ContainerRegistry(url)
    with pytest.raises(InsecureRegistryError):
        reg.client  # noqa: B018 - the decision is made when the client is built
    with Transport(url, insecure=True, use_docker_config=False) as transport:
        assert transport.base_url == url
    with ContainerRegistry(url, insecure=True) as reg:
        assert reg.client.transport.base_url == url


@pytest.mark.parametrize(("given", "expected"), [
    ("registry.example.com", "https://registry.example.com"),
    ("registry.example.com:5000", "https://registry.example.com:5000"),
    ("10.1.2.3:5000", "https://10.1.2.3:5000"),
    ("127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("localhost:5000", "http://localhost:5000"),
    ("127.0.0.2:5000", "http://127.0.0.2:5000"),
    ("[::1]:5000", "http://[::1]:5000"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https://127.0.0.1:5000", "https://127.0.0.1:5000"),
])
def test_scheme_chosen_without_connecting(given: str, expected: str) -> None:
    with Transport(given, use_docker_config=False) as transport:
        assert transport.base_url == expected
    with Transport(given.split("://")[-1], insecure=True, use_docker_config=False) as transport:
        assert transport.base_url == "http://" + expected.split("://")[1]
