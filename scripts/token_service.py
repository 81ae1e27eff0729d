"""A small Docker registry token service for the project's tests.

It implements the two halves of the registry token protocol that docker,
skopeo and registry_nb use:

* ``GET /token?service=S&scope=A&scope=B&account=U`` with optional Basic
  credentials (``offline_token=true`` adds a ``refresh_token``);
* ``POST /token`` with a form: ``grant_type=password`` (``username``,
  ``password``, ``service``, ``scope`` space separated, ``access_type=offline``)
  or ``grant_type=refresh_token`` (``refresh_token``, ``service``, ``scope``).

Tokens are RS256 JWTs signed by ``key.pem``; the self-signed ``cert.pem`` is
both the registry's ``auth.token.rootcertbundle`` and the JWT header ``x5c``.

Rules: ``alice`` gets every action asked for on every repository and
``registry:catalog:*``; ``reader`` gets ``pull`` only; anonymous users get
``pull`` on repositories under ``public/`` only; bad credentials get 401.

``GET /stats`` returns JSON counters (tokens issued, per user and per grant,
refusals, the most recent requests) so tests can check a client caches tokens.
``GET /healthz`` answers 200.

Run: ``python token_service.py --state DIR --port 5003 --service NAME
--issuer NAME --ttl 300``; the users file is ``DIR/users.json``.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime as dt
import hmac
import json
import secrets
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def ensure_key_and_cert(state: Path, common_name: str = "registry-nb token signer") -> None:
    """Create ``key.pem`` and a self-signed ``cert.pem`` in *state* if missing."""
    key_path, cert_path = state / "key.pem", state / "cert.pem"
    if key_path.exists() and cert_path.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:name/with:colon:pull,push`` -> (type, name, actions)."""
    first, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not first or not name:
        return None
    rtype = first.split("(", 1)[0]  # "repository(plugin)" -> "repository"
    return rtype, name, [a for a in actions.split(",") if a]


def granted_actions(user: str | None, rtype: str, name: str, asked: list[str]) -> list[str]:
    """What *user* (None = anonymous) may do with the resource."""
    if user == "alice":
        if rtype == "registry":
            return ["*"] if name == "catalog" and asked else []
        return list(dict.fromkeys(asked))
    if rtype != "repository":
        return []
    if user == "reader":
        return ["pull"] if "pull" in asked else []
    if user is None and name.startswith("public/"):
        return ["pull"] if "pull" in asked else []
    return []


class TokenService:
    def __init__(self, state: Path, service: str, issuer: str, ttl: int):
        self.state = state
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.users: dict[str, str] = json.loads((state / "users.json").read_text())
        self.key = serialization.load_pem_private_key(
            (state / "key.pem").read_bytes(), password=None
        )
        cert = x509.load_pem_x509_certificate((state / "cert.pem").read_bytes())
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.lock = threading.Lock()
        self.refresh_tokens: dict[str, str] = {}
        self.stats: dict = {
            "tokens_issued": 0,
            "by_user": collections.Counter(),
            "by_grant": collections.Counter(),
            "refused": 0,
            "refresh_tokens_issued": 0,
        }
        self.recent: collections.deque = collections.deque(maxlen=100)

    # -- authentication -------------------------------------------------
    def check_password(self, username: str, password: str) -> bool:
        expected = self.users.get(username)
        return expected is not None and hmac.compare_digest(expected, password)

    # -- token minting --------------------------------------------------
    def mint(self, user: str | None, scopes: list[str], grant: str, offline: bool) -> dict:
        access = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            rtype, name, asked = parsed
            actions = granted_actions(user, rtype, name, asked)
            access.append({"type": rtype, "name": name, "actions": actions})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.ttl,
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": self.x5c})
        issued_at = dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat().replace(
            "+00:00", "Z"
        )
        body = {
            "token": token,
            "access_token": token,
            "expires_in": self.ttl,
            "issued_at": issued_at,
        }
        with self.lock:
            if offline and user is not None:
                refresh = secrets.token_urlsafe(24)
                self.refresh_tokens[refresh] = user
                body["refresh_token"] = refresh
                self.stats["refresh_tokens_issued"] += 1
            self.stats["tokens_issued"] += 1
            self.stats["by_user"][user or "<anonymous>"] += 1
            self.stats["by_grant"][grant] += 1
            self.recent.append(
                {"user": user, "grant": grant, "scopes": scopes, "access": access, "iat": now}
            )
        return body

    def refuse(self) -> None:
        with self.lock:
            self.stats["refused"] += 1

    def stats_json(self) -> dict:
        with self.lock:
            out = dict(self.stats)
            out["by_user"] = dict(self.stats["by_user"])
            out["by_grant"] = dict(self.stats["by_grant"])
            out["recent"] = list(self.recent)
        return out


class Handler(BaseHTTPRequestHandler):
    server_version = "registry-nb-token/1"
    svc: TokenService  # set on the class by serve()

    def log_message(self, fmt, *args):  # noqa: D401 - one line per request to stderr
        sys.stderr.write(
            f"{self.address_string()} - [{self.log_date_time_string()}] {fmt % args}\n"
        )

    def _send_json(self, code: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, error: str, description: str) -> None:
        headers = {}
        if code == 401:
            self.svc.refuse()
            headers["WWW-Authenticate"] = 'Basic realm="registry-nb-token"'
        self._send_json(code, {"error": error, "error_description": description,
                               "details": description}, headers)

    def _basic_user(self) -> tuple[bool, str | None]:
        """(ok, user): ok is False when credentials were sent and are wrong."""
        header = self.headers.get("Authorization", "")
        if not header:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            username, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False, None
        if not self.svc.check_password(username, password):
            return False, None
        return True, username

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        if url.path == "/healthz":
            return self._send_json(200, {"ok": True})
        if url.path == "/stats":
            return self._send_json(200, self.svc.stats_json())
        if url.path != "/token":
            return self._error(404, "not_found", f"no such endpoint {url.path}")
        service = query.get("service", [""])[0]
        if service and service != self.svc.service:
            return self._error(400, "invalid_request", f"unknown service {service!r}")
        ok, user = self._basic_user()
        if not ok:
            return self._error(401, "unauthorized", "invalid username or password")
        scopes = []
        for value in query.get("scope", []):
            scopes.extend(value.split())  # some clients join scopes with spaces
        offline = query.get("offline_token", ["false"])[0].lower() == "true"
        self._send_json(200, self.svc.mint(user, scopes, "get", offline))

    def do_POST(self):  # noqa: N802
        url = urlsplit(self.path)
        if url.path != "/token":
            return self._error(404, "not_found", f"no such endpoint {url.path}")
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)

        def field(name: str, default: str = "") -> str:
            return form.get(name, [default])[0]

        service = field("service")
        if service and service != self.svc.service:
            return self._error(400, "invalid_request", f"unknown service {service!r}")
        scopes = []
        for value in form.get("scope", []):
            scopes.extend(value.split())
        grant = field("grant_type")
        offline = field("access_type") == "offline" or field("offline_token") == "true"
        if grant == "password":
            username, password = field("username"), field("password")
            if not self.svc.check_password(username, password):
                return self._error(401, "invalid_grant", "invalid username or password")
            return self._send_json(200, self.svc.mint(username, scopes, "password", offline))
        if grant == "refresh_token":
            refresh = field("refresh_token")
            with self.svc.lock:
                user = self.svc.refresh_tokens.get(refresh)
            if user is None:
                return self._error(401, "invalid_grant", "unknown refresh token")
            body = self.svc.mint(user, scopes, "refresh_token", offline=False)
            body["refresh_token"] = refresh
            return self._send_json(200, body)
        return self._error(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")


def serve(state: Path, host: str, port: int, service: str, issuer: str, ttl: int) -> None:
    Handler.svc = TokenService(state, service, issuer, ttl)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"token service for {service!r} on http://{host}:{port}/token", file=sys.stderr,
          flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5003)
    p.add_argument("--service", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--ttl", type=int, default=300)
    a = p.parse_args(argv)
    serve(a.state, a.host, a.port, a.service, a.issuer, a.ttl)


if __name__ == "__main__":
    main()
