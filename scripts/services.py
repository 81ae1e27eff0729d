#!/usr/bin/env python3
"""Start, stop and inspect registry_nb's local test services.

    python scripts/services.py start|stop|status|env

Services (each in its own folder under ``$REGISTRY_NB_STATE``, default
``/tmp/registry-nb-services``):

=================  ==============================================  =============
folder             what                                            address
=================  ==============================================  =============
``docker/``        dockerd with its own data root and socket       unix socket
``registry-open``  distribution registry, no auth                  127.0.0.1:5000
``registry-basic`` distribution registry, htpasswd (Basic)         127.0.0.1:5001
``registry-token`` distribution registry, token auth (Bearer)      127.0.0.1:5002
``token/``         token service for registry-token (test tool)    127.0.0.1:5003
=================  ==============================================  =============

Ports can be changed with ``REGISTRY_NB_PORT_OPEN``, ``REGISTRY_NB_PORT_BASIC``,
``REGISTRY_NB_PORT_TOKEN`` and ``REGISTRY_NB_PORT_TOKEN_SERVICE``; the token
lifetime with ``REGISTRY_NB_TOKEN_TTL`` (seconds, default 300); the health wait
with ``REGISTRY_NB_START_TIMEOUT`` (seconds, default 60).

``start`` is idempotent: a service whose pid file names a live process of ours
that passes its health check is left alone (it is restarted if its command line
changed, e.g. a new port). ``stop`` only signals pids from our pid files (and
dockerd's containerd / shims, recognised by our exec root) and waits for them.
Everything tests need is written to ``$REGISTRY_NB_STATE/services.json``.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_STATE = "/tmp/registry-nb-services"
TOKEN_SERVICE_NAME = "registry-nb-token"
TOKEN_ISSUER = "registry-nb-token-service"
BASIC_REALM = "registry-nb-basic"


def state_dir() -> Path:
    return Path(os.environ.get("REGISTRY_NB_STATE") or DEFAULT_STATE).absolute()


def _port(name: str, default: int) -> int:
    value = os.environ.get(f"REGISTRY_NB_PORT_{name}")
    return int(value) if value else default


def _log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------
# process helpers
# --------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def _alive(pid: int) -> bool:
    """True for a live, non-zombie process (reaps it when it is our child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _pids_matching(fragment: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            if any(fragment in arg for arg in _cmdline(int(entry.name))):
                out.append(int(entry.name))
    return out


def _terminate(pids: list[int], timeout: float) -> None:
    pids = [p for p in pids if _alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _port_owner(port: int) -> str:
    if shutil.which("ss"):
        res = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=False
        )
        if res.stdout.strip():
            return res.stdout.strip()
    return "unknown process"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 2.0):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def _http_get(host: str, port: int, path: str, timeout: float = 2.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# services
# --------------------------------------------------------------------------
@dataclass
class Service:
    name: str
    folder: Path
    port: int | None = None
    stop_timeout: float = 10.0
    env: dict = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return self.folder / "pid"

    @property
    def logfile(self) -> Path:
        return self.folder / f"{self.name}.log"

    @property
    def launchfile(self) -> Path:
        return self.folder / "launch.json"

    # overridden --------------------------------------------------------
    def prepare(self) -> None:
        """Write configs, keys, ... (idempotent)."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def signature(self) -> dict:
        """What must be unchanged for a running instance to be reused."""
        return {"argv": self.argv()}

    def describe(self) -> str:
        return f"127.0.0.1:{self.port}" if self.port else ""

    def extra_pids(self) -> list[int]:
        """Processes the service started itself that stop must also end."""
        return []

    # common ------------------------------------------------------------
    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        # ours only if the live process still runs our command line
        recorded = self.recorded_argv()
        if recorded is None or _cmdline(pid) != recorded:
            return None
        return pid

    def recorded(self, key: str = "argv"):
        try:
            return json.loads(self.launchfile.read_text())[key]
        except (OSError, ValueError, KeyError):
            return None

    def recorded_argv(self) -> list[str] | None:
        return self.recorded("argv")

    def safe_healthy(self) -> bool:
        try:
            return self.healthy()
        except (OSError, http.client.HTTPException):
            return False

    def launch(self) -> subprocess.Popen:
        argv = self.argv()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.update(self.env)
        log = open(self.logfile, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env, cwd=self.folder,
            )
        finally:
            log.close()
        self.pidfile.write_text(f"{proc.pid}\n")
        self.launchfile.write_text(
            json.dumps({"argv": argv, "signature": self.signature(), "started": time.time()})
        )
        return proc

    def stop(self) -> bool:
        pid = self.pid()
        pids = [pid] if pid else []
        if pids:
            _terminate(pids, self.stop_timeout)
        leftovers = self.extra_pids()
        if leftovers:
            _terminate(leftovers, 5)
        self.pidfile.unlink(missing_ok=True)
        return bool(pids or leftovers)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class ServiceError(RuntimeError):
    def __init__(self, service: Service, message: str, show_log: bool = True):
        super().__init__(message)
        self.service = service
        self.show_log = show_log


class Dockerd(Service):
    def __init__(self, state: Path):
        super().__init__("dockerd", state / "docker", stop_timeout=30.0)

    @property
    def socket_path(self) -> Path:
        return self.folder / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    def prepare(self) -> None:
        for sub in ("data", "exec"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        # own (empty) daemon.json so /etc/docker/daemon.json cannot change the setup
        (self.folder / "daemon.json").write_text("{}\n")

    def argv(self) -> list[str]:
        f = self.folder
        return [
            shutil.which("dockerd") or "/usr/sbin/dockerd",
            "--config-file", str(f / "daemon.json"),
            "--data-root", str(f / "data"),
            "--exec-root", str(f / "exec"),
            "--pidfile", str(f / "docker.pid"),
            "--host", self.docker_host,
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
            "--shutdown-timeout=5",
        ]

    def healthy(self) -> bool:
        conn = _UnixHTTPConnection(str(self.socket_path))
        try:
            conn.request("GET", "/_ping")
            resp = conn.getresponse()
            return resp.status == 200 and resp.read().strip() == b"OK"
        finally:
            conn.close()

    def describe(self) -> str:
        return self.docker_host

    def extra_pids(self) -> list[int]:
        # containerd and containerd-shims started by our dockerd live under our exec root
        return _pids_matching(str(self.folder / "exec"))


class TokenServer(Service):
    def __init__(self, state: Path, port: int, ttl: int, users: dict[str, str]):
        super().__init__("token", state / "token", port=port)
        self.ttl = ttl
        self.users = users

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        sys.path.insert(0, str(HERE))
        try:
            from token_service import ensure_key_and_cert
        finally:
            sys.path.pop(0)
        ensure_key_and_cert(self.folder)
        users = self.folder / "users.json"
        users.write_text(json.dumps(self.users))
        users.chmod(0o600)

    def argv(self) -> list[str]:
        return [
            sys.executable, str(HERE / "token_service.py"),
            "--state", str(self.folder), "--host", "127.0.0.1", "--port", str(self.port),
            "--service", TOKEN_SERVICE_NAME, "--issuer", TOKEN_ISSUER, "--ttl", str(self.ttl),
        ]

    def signature(self) -> dict:
        # not argv[0]: `python` and `python3` of the same venv are the same service
        return {"argv": self.argv()[1:], "users": self.users, "cert": self.cert.read_text()}

    def healthy(self) -> bool:
        status, _, body = _http_get("127.0.0.1", self.port, "/healthz")
        return status == 200 and json.loads(body).get("ok") is True


class Registry(Service):
    def __init__(self, state: Path, kind: str, port: int, auth: dict | None,
                 http_secret: str):
        super().__init__(f"registry-{kind}", state / f"registry-{kind}", port=port)
        self.kind = kind
        self.auth = auth
        self.http_secret = http_secret

    @property
    def storage(self) -> Path:
        return self.folder / "data"

    @property
    def config(self) -> Path:
        return self.folder / "config.yml"

    def prepare(self) -> None:
        self.storage.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "info", "fields": {"service": self.name}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": f"127.0.0.1:{self.port}",
                "secret": self.http_secret,
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
        }
        if self.auth:
            config["auth"] = self.auth
        # JSON is valid YAML, and the registry's parser reads it.
        self.config.write_text(json.dumps(config, indent=2) + "\n")

    def signature(self) -> dict:
        sig = {"argv": self.argv(), "config": self.config.read_text()}
        # files the registry reads only at start: a change means a restart
        for section in (self.auth or {}).values():
            for key in ("path", "rootcertbundle"):
                if key in section and Path(section[key]).exists():
                    sig[key] = Path(section[key]).read_text()
        return sig

    def argv(self) -> list[str]:
        return [shutil.which("docker-registry") or "/usr/bin/docker-registry", "serve",
                str(self.config)]

    def healthy(self) -> bool:
        status, headers, _ = _http_get("127.0.0.1", self.port, "/v2/")
        expected = 200 if self.auth is None else 401
        api = {k.lower(): v for k, v in headers.items()}.get("docker-distribution-api-version")
        return status == expected and api == "registry/2.0"


# --------------------------------------------------------------------------
# the set of services
# --------------------------------------------------------------------------
def _secrets(state: Path) -> dict:
    path = state / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    data = {
        "basic": {"alice": secrets.token_urlsafe(12)},
        "token": {"alice": secrets.token_urlsafe(12), "reader": secrets.token_urlsafe(12)},
        "http_secret": secrets.token_hex(16),
    }
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return data


def _htpasswd(user: str, password: str) -> str:
    res = subprocess.run(["htpasswd", "-Bbn", user, password], capture_output=True,
                         text=True, check=True)
    return res.stdout.strip() + "\n"


@dataclass
class Services:
    state: Path
    secrets: dict
    ttl: int
    dockerd: Dockerd
    token: TokenServer
    open: Registry
    basic: Registry
    token_registry: Registry

    @classmethod
    def load(cls) -> Services:
        state = state_dir()
        state.mkdir(parents=True, exist_ok=True)
        sec = _secrets(state)
        ttl = int(os.environ.get("REGISTRY_NB_TOKEN_TTL") or 300)
        token = TokenServer(state, _port("TOKEN_SERVICE", 5003), ttl, sec["token"])
        basic_dir = state / "registry-basic"
        return cls(
            state=state, secrets=sec, ttl=ttl,
            dockerd=Dockerd(state),
            token=token,
            open=Registry(state, "open", _port("OPEN", 5000), None, sec["http_secret"]),
            basic=Registry(
                state, "basic", _port("BASIC", 5001),
                {"htpasswd": {"realm": BASIC_REALM, "path": str(basic_dir / "htpasswd")}},
                sec["http_secret"],
            ),
            token_registry=Registry(
                state, "token", _port("TOKEN", 5002),
                {"token": {
                    "realm": token.realm,
                    "service": TOKEN_SERVICE_NAME,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(token.cert),
                    "autoredirect": False,
                }},
                sec["http_secret"],
            ),
        )

    def all(self) -> list[Service]:
        # order matters: the token registry needs the token service's certificate
        return [self.token, self.open, self.basic, self.token_registry, self.dockerd]

    def select(self, names: list[str]) -> list[Service]:
        """The services named on the command line (all when none): docker, open, basic, token."""
        if not names:
            return self.all()
        groups = {
            "docker": [self.dockerd], "open": [self.open], "basic": [self.basic],
            "token": [self.token, self.token_registry],
        }
        unknown = [n for n in names if n not in groups]
        if unknown:
            raise SystemExit(f"unknown service {unknown[0]!r}: choose from {', '.join(groups)}")
        chosen = {id(svc) for n in names for svc in groups[n]}
        return [svc for svc in self.all() if id(svc) in chosen]

    def prepare(self) -> None:
        self.token.prepare()
        for reg in (self.open, self.basic, self.token_registry):
            reg.prepare()
        htpasswd = self.basic.folder / "htpasswd"
        user, password = next(iter(self.secrets["basic"].items()))
        matches = htpasswd.exists() and subprocess.run(
            ["htpasswd", "-vb", str(htpasswd), user, password], capture_output=True, check=False
        ).returncode == 0
        if not matches:
            htpasswd.write_text(_htpasswd(user, password))
        self.dockerd.prepare()

    def describe(self) -> dict:
        def registry(reg: Registry, **extra) -> dict:
            return {
                "name": reg.kind,
                "host": f"127.0.0.1:{reg.port}",
                "url": f"http://127.0.0.1:{reg.port}",
                "port": reg.port,
                "storage": str(reg.storage),
                "config": str(reg.config),
                "log": str(reg.logfile),
                **extra,
            }

        basic_user, basic_pw = next(iter(self.secrets["basic"].items()))
        tok_users = self.secrets["token"]
        return {
            "state": str(self.state),
            "docker_host": self.dockerd.docker_host,
            "docker": {
                "host": self.dockerd.docker_host,
                "socket": str(self.dockerd.socket_path),
                "data_root": str(self.dockerd.folder / "data"),
                "log": str(self.dockerd.logfile),
            },
            "open": registry(self.open, auth="none", username=None, password=None),
            "basic": registry(self.basic, auth="basic", username=basic_user,
                              password=basic_pw, realm=BASIC_REALM),
            "token": registry(
                self.token_registry, auth="token",
                username="alice", password=tok_users["alice"],
                realm=self.token.realm, service=TOKEN_SERVICE_NAME, issuer=TOKEN_ISSUER,
                users=dict(tok_users),
                token_service=self.token.url,
                stats_url=f"{self.token.url}/stats",
                expires_in=self.ttl,
                rootcertbundle=str(self.token.cert),
            ),
            "token_service": {
                "url": self.token.url,
                "realm": self.token.realm,
                "stats_url": f"{self.token.url}/stats",
                "port": self.token.port,
                "service": TOKEN_SERVICE_NAME,
                "issuer": TOKEN_ISSUER,
                "expires_in": self.ttl,
                "cert": str(self.token.cert),
                "key": str(self.token.folder / "key.pem"),
                "users": dict(tok_users),
                "log": str(self.token.logfile),
            },
        }


@contextlib.contextmanager
def _locked(state: Path):
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(names: list[str] | None = None) -> int:
    t0 = time.monotonic()
    svcs = Services.load()
    timeout = float(os.environ.get("REGISTRY_NB_START_TIMEOUT") or 60)
    with _locked(svcs.state):
        svcs.prepare()
        to_launch: list[Service] = []
        for svc in svcs.select(names or []):
            pid = svc.pid()
            same = svc.recorded("signature") == svc.signature()
            if pid and same and _wait_healthy(svc, None, 5):
                _log(f"{svc.name:15} already running (pid {pid}) {svc.describe()}")
                continue
            if pid:
                _log(f"{svc.name:15} restarting pid {pid} (changed or unhealthy)")
                svc.stop()
            elif svc.extra_pids():
                svc.stop()  # e.g. containerd orphaned by a dead dockerd of ours
            to_launch.append(svc)
        # check every port before launching anything
        for svc in to_launch:
            if svc.port is not None and not _port_free(svc.port):
                return _fail(ServiceError(
                    svc,
                    f"port 127.0.0.1:{svc.port} for {svc.name} is taken by a process that "
                    f"these services (state {svcs.state}) did not start:\n  "
                    f"{_port_owner(svc.port)}\nstop it, or pick other ports with "
                    f"REGISTRY_NB_PORT_OPEN/_BASIC/_TOKEN/_TOKEN_SERVICE",
                    show_log=False,
                ))
        launched = [(svc, svc.launch()) for svc in to_launch]
        failures = []
        for svc, proc in launched:
            try:
                if not _wait_healthy(svc, proc, timeout):
                    raise ServiceError(svc, f"{svc.name} did not become healthy in {timeout}s")
            except ServiceError as exc:
                svc.stop()
                failures.append(exc)
                continue
            _log(f"{svc.name:15} started (pid {proc.pid}) {svc.describe()}")
        for exc in failures:
            _fail(exc)
        if failures:
            return 1
        out = svcs.state / "services.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(svcs.describe(), indent=2) + "\n")
        tmp.chmod(0o600)
        tmp.replace(out)
    _log(f"services ready in {time.monotonic() - t0:.1f}s; details in {out}")
    return 0


def _wait_healthy(svc: Service, proc: subprocess.Popen | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if svc.safe_healthy():
            return True
        if proc is not None and proc.poll() is not None:
            raise ServiceError(svc, f"{svc.name} exited with code {proc.returncode}")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _fail(exc: ServiceError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    if exc.show_log:
        print(f"--- last lines of {exc.service.logfile}:", file=sys.stderr)
        print(exc.service.log_tail(), file=sys.stderr)
    return 1


def stop() -> int:
    svcs = Services.load()
    with _locked(svcs.state):
        for svc in reversed(svcs.all()):
            if svc.stop():
                _log(f"{svc.name:15} stopped")
            else:
                _log(f"{svc.name:15} was not running")
    return 0


def status() -> int:
    svcs = Services.load()
    ok = True
    for svc in svcs.all():
        pid = svc.pid()
        if pid:
            health = "healthy" if svc.safe_healthy() else "UNHEALTHY"
            _log(f"{svc.name:15} running  pid {pid:<8} {health:9} {svc.describe()}")
            ok = ok and health == "healthy"
        else:
            _log(f"{svc.name:15} stopped")
            ok = False
    _log(f"state: {svcs.state}")
    return 0 if ok else 1


def env() -> int:
    path = state_dir() / "services.json"
    try:
        info = json.loads(path.read_text())
    except OSError:
        print(f"error: {path} not found: run `python scripts/services.py start`",
              file=sys.stderr)
        return 1
    tok = info["token"]
    values = {
        "REGISTRY_NB_STATE": info["state"],
        "REGISTRY_NB_SERVICES_JSON": str(path),
        "DOCKER_HOST": info["docker_host"],
        "REGISTRY_NB_OPEN": info["open"]["host"],
        "REGISTRY_NB_BASIC": info["basic"]["host"],
        "REGISTRY_NB_BASIC_USER": info["basic"]["username"],
        "REGISTRY_NB_BASIC_PASSWORD": info["basic"]["password"],
        "REGISTRY_NB_TOKEN": tok["host"],
        "REGISTRY_NB_TOKEN_REALM": tok["realm"],
        "REGISTRY_NB_TOKEN_SERVICE": tok["service"],
        "REGISTRY_NB_TOKEN_USER": tok["username"],
        "REGISTRY_NB_TOKEN_PASSWORD": tok["password"],
        "REGISTRY_NB_TOKEN_READER_PASSWORD": tok["users"]["reader"],
    }
    for key, value in values.items():
        print(f"export {key}={shlex.quote(str(value))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"start": start, "stop": stop, "status": status, "env": env}
    if not argv or argv[0] not in commands or (argv[0] != "start" and len(argv) > 1):
        print(f"usage: {Path(__file__).name} {{{'|'.join(commands)}}} "
              "(start [docker|open|basic|token ...] starts only those)", file=sys.stderr)
        return 2
    if argv[0] == "start":
        return start(argv[1:])
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main())
