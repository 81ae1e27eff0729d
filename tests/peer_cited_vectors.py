"""Small peer test tables written out by hand, each cited by file and test name.

The vectors README (../shared/data/peer/README.md) names these tables without
extracting them: docker/cli's config tests, docker-py's auth tests, and the
WWW-Authenticate tests of distribution and go-containerregistry. They were read from
the copies the search index holds (the commits below; the README names docker/cli
28f756087eea, docker-py afc6d1ee308e, distribution 0d6b721dc3ce and go-containerregistry
3f4ff3ca60f5, which the index does not hold); the values are the peers', the checks ours.

Credential helpers are real processes: ``tests/fixtures/docker-credential-regnbtest``
(the docker-credential-helpers protocol, answering from a JSON file), and helpers that
are not installed, whose refusal names the helper registry_nb chose.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peer_vectors import Ctx, Vector, b64, challenges, refused

from registry_nb.errors import AuthenticationError, InvalidReferenceError
from registry_nb.oci.reference import ImageReference
from registry_nb.remote.credentials import credentials_from_docker_config, load_docker_config

FIXTURES = Path(__file__).parent / "fixtures"

CLI_FILE = "docker/cli@0156d8a0e964:cli/config/configfile/file_test.go"
CLI_CONFIG = "docker/cli@13e842a11005:cli/config/config_test.go"
CLI_NATIVE = "docker/cli@0dd6f7f1b33b:cli/config/credentials/native_store_test.go"
DOCKER_PY = "docker/docker-py@002c035e45ed:tests/unit/auth_test.py"
DIST_CHALLENGE = ("distribution/distribution@055cc71b4e5c:"
                  "internal/client/auth/challenge/authchallenge_test.go")
GGCR_CHALLENGE = ("google/go-containerregistry@2980ec33cbd2:"
                  "pkg/v1/remote/internal/authchallenge/authchallenge_test.go")
GGCR_PING = "google/go-containerregistry@0341a1bb5e57:pkg/v1/remote/transport/ping_test.go"


def helper(ctx: Ctx, store: dict[str, Any]) -> None:
    """Put the test credential helper on PATH, answering from ``store``."""
    path = ctx.tmp_path / "helper-store.json"
    path.write_text(json.dumps(store))
    ctx.monkeypatch.setenv("PATH", f"{FIXTURES}{os.pathsep}{os.environ.get('PATH', '')}")
    ctx.monkeypatch.setenv("REGNBTEST_CREDS", str(path))


def user_of(host: str | None, config: Any) -> str | None:
    found = credentials_from_docker_config(host, config)  # type: ignore[arg-type]
    return None if found is None else found.username


def helper_refused(host: str, config: Any) -> str:
    """The message of the refusal when the helper chosen for ``host`` is not installed."""
    return str(refused(lambda: credentials_from_docker_config(host, config),
                       AuthenticationError))


# ------------------------------------------------------------------ docker-py: names

_RESOLVE_NAME = [  # ResolveRepositoryNameTest: name -> (index, remote name)
    ("test_resolve_repository_name_hub_library_image", "image", ("docker.io", "image")),
    ("test_resolve_repository_name_dotted_hub_library_image", "image.valid",
     ("docker.io", "image.valid")),
    ("test_resolve_repository_name_hub_image", "username/image",
     ("docker.io", "username/image")),
    ("test_explicit_hub_index_library_image", "docker.io/image", ("docker.io", "image")),
    ("test_explicit_legacy_hub_index_library_image", "index.docker.io/image",
     ("docker.io", "image")),
    ("test_resolve_repository_name_private_registry", "my.registry.net/image",
     ("my.registry.net", "image")),
    ("test_resolve_repository_name_private_registry_with_port", "my.registry.net:5000/image",
     ("my.registry.net:5000", "image")),
    ("test_resolve_repository_name_private_registry_with_username",
     "my.registry.net/username/image", ("my.registry.net", "username/image")),
    ("test_resolve_repository_name_no_dots_but_port", "hostname:5000/image",
     ("hostname:5000", "image")),
    ("test_resolve_repository_name_no_dots_but_port_and_username",
     "hostname:5000/username/image", ("hostname:5000", "username/image")),
    ("test_resolve_repository_name_localhost", "localhost/image", ("localhost", "image")),
    ("test_resolve_repository_name_localhost_with_username", "localhost/username/image",
     ("localhost", "username/image")),
    ("test_invalid_index_name", "-gecko.com/image", None),
]


def _resolve_name(name: str, expected: tuple[str, str] | None) -> Callable[[Ctx], None]:
    def check(_: Ctx) -> None:
        if expected is None:  # errors.InvalidRepository
            refused(lambda: ImageReference.parse(name), InvalidReferenceError)
            return
        ref = ImageReference.parse(name)
        index, remote = expected
        assert ref.registry == index
        assert ref.familiar == (remote if index == "docker.io" else f"{index}/{remote}")
    return check


# ------------------------------------------------------------------ docker-py: auth lookup


def _encode_auth(username: str, password: str = "") -> str:
    return b64(f"{username}:{password}")


_AUTHS = {  # ResolveAuthTest.auth_config
    "https://index.docker.io/v1/": {"auth": _encode_auth("indexuser")},
    "my.registry.net": {"auth": _encode_auth("privateuser")},
    "http://legacy.registry.url/v1/": {"auth": _encode_auth("legacyauth")},
}
_RESOLVE_AUTH = [  # ResolveAuthTest: registry (or image) -> username
    ("test_resolve_authconfig_hostname_only", "my.registry.net", "privateuser"),
    ("test_resolve_authconfig_no_protocol", "my.registry.net/v1/", "privateuser"),
    ("test_resolve_authconfig_no_path", "http://my.registry.net", "privateuser"),
    ("test_resolve_authconfig_no_path_trailing_slash", "http://my.registry.net/",
     "privateuser"),
    ("test_resolve_authconfig_no_path_wrong_secure_proto", "https://my.registry.net",
     "privateuser"),
    ("test_resolve_authconfig_no_path_wrong_insecure_proto", "http://index.docker.io",
     "indexuser"),
    ("test_resolve_authconfig_path_wrong_proto", "https://my.registry.net/v1/", "privateuser"),
    ("test_resolve_authconfig_default_registry", None, "indexuser"),
    ("test_resolve_authconfig_fully_explicit", "http://my.registry.net/v1/", "privateuser"),
    ("test_resolve_authconfig_legacy_config", "legacy.registry.url", "legacyauth"),
    ("test_resolve_authconfig_no_match", "does.not.exist", None),
    ("test_resolve_registry_and_auth_library_image", "image=", "indexuser"),
    ("test_resolve_registry_and_auth_hub_image", "username/image=", "indexuser"),
    ("test_resolve_registry_and_auth_explicit_hub", "docker.io/username/image=", "indexuser"),
    ("test_resolve_registry_and_auth_explicit_legacy_hub", "index.docker.io/username/image=",
     "indexuser"),
    ("test_resolve_registry_and_auth_private_registry", "my.registry.net/image=",
     "privateuser"),
    ("test_resolve_registry_and_auth_unauthenticated_registry", "other.registry.net/image=",
     None),
]


def _resolve_auth(host: str | None, expected: str | None) -> Callable[[Ctx], None]:
    def check(_: Ctx) -> None:
        if host is not None and host.endswith("="):  # an image name: its registry's creds
            registry = ImageReference.parse(host[:-1]).registry
            assert user_of(registry, {"auths": _AUTHS}) == expected
        else:
            assert user_of(host, {"auths": _AUTHS}) == expected
    return check


def _empty_credstore(ctx: Ctx) -> None:
    # test_resolve_auth_with_empty_credstore_and_auth_dict: the store has nothing for Hub
    helper(ctx, {})
    config = {"auths": {"https://index.docker.io/v1/": {"auth": _encode_auth("indexuser")}},
              "credsStore": "regnbtest"}
    assert user_of(None, config) == "indexuser"


def _write(ctx: Ctx, name: str, data: Any) -> Path:
    folder = ctx.tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


_SAKUYA = base64.b64encode(b"sakuya:izayoi").decode()
_REGISTRY = "https://your.private.registry.io"


def _modern_json(ctx: Ctx) -> None:  # test_load_config_custom_config_env_with_auths
    path = _write(ctx, "config.json", {"auths": {_REGISTRY: {
        "auth": _SAKUYA, "email": "sakuya@scarlet.net"}}})
    ctx.monkeypatch.setenv("DOCKER_CONFIG", str(path.parent))
    found = credentials_from_docker_config("your.private.registry.io")
    assert found is not None and (found.username, found.password) == ("sakuya", "izayoi")


def _legacy_json(ctx: Ctx) -> None:  # test_load_config_custom_config_env: no "auths" key
    path = _write(ctx, "config.json", {_REGISTRY: {"auth": _SAKUYA,
                                                   "email": "sakuya@scarlet.net"}})
    ctx.monkeypatch.setenv("DOCKER_CONFIG", str(path.parent))
    assert user_of("your.private.registry.io", None) == "sakuya"


def _legacy_dockercfg(ctx: Ctx) -> None:  # test_load_legacy_config: "auth = ..." lines
    path = _write(ctx, ".dockercfg", f"auth = {_SAKUYA}\nemail = sakuya@scarlet.net")
    assert user_of("docker.io", load_docker_config(path)) == "sakuya"


def _utf8(ctx: Ctx) -> None:  # test_load_config_custom_config_env_utf8
    auth = base64.b64encode(b"sakuya\xc3\xa6:izayoi\xc3\xa6").decode()
    path = _write(ctx, "config.json", {"auths": {_REGISTRY: {"auth": auth}}})
    found = credentials_from_docker_config("your.private.registry.io", load_docker_config(path))
    assert found is not None
    assert (found.username, found.password) == ("sakuya\u00e6", "izayoi\u00e6")


def _unknown_keys(ctx: Ctx) -> None:  # test_load_config_unknown_keys
    path = _write(ctx, "config.json", {"detachKeys": "ctrl-q, ctrl-u, ctrl-i"})
    assert user_of("docker.io", load_docker_config(path)) is None


def _invalid_auth_dict(ctx: Ctx) -> None:  # test_load_config_invalid_auth_dict
    path = _write(ctx, "config.json", {"auths": {"scarlet.net": {"sakuya": "izayoi"}}})
    assert user_of("scarlet.net", load_docker_config(path)) is None


def _identity_token(ctx: Ctx) -> None:  # test_load_config_identity_token
    token = "1ce1cebb-503e-7043-11aa-7feb8bd4a1ce"
    path = _write(ctx, "config.json", {"auths": {"scarlet.net": {
        "auth": _encode_auth("sakuya"), "identitytoken": token}}})
    found = credentials_from_docker_config("scarlet.net", load_docker_config(path))
    assert found is not None and found.identity_token == token


def _credential_store(ctx: Ctx) -> None:  # CredstoreTest.test_get_credential_store
    helper(ctx, {"registry1.io": {"Username": "u1", "Secret": "s1"}})
    config = {"credHelpers": {"registry1.io": "regnbtest", "registry2.io": "powerlock"},
              "credsStore": "blackbox"}
    assert user_of("registry1.io", config) == "u1"
    assert "docker-credential-powerlock" in helper_refused("registry2.io", config)
    assert "docker-credential-blackbox" in helper_refused("registry3.io", config)


def _credential_store_no_default(ctx: Ctx) -> None:  # test_get_credential_store_no_default
    config = {"credHelpers": {"registry1.io": "truesecret", "registry2.io": "powerlock"}}
    assert "docker-credential-powerlock" in helper_refused("registry2.io", config)
    assert user_of("registry3.io", config) is None


def _credential_store_default_index(ctx: Ctx) -> None:  # test_get_credential_store_default_index
    helper(ctx, {"https://index.docker.io/v1/": {"Username": "hub", "Secret": "s"}})
    config = {"credHelpers": {"https://index.docker.io/v1/": "regnbtest"},
              "credsStore": "truesecret"}
    assert user_of(None, config) == "hub"
    assert user_of("docker.io", config) == "hub"
    assert "docker-credential-truesecret" in helper_refused("images.io", config)


# ------------------------------------------------------------------ docker/cli config files

_JOEJOE = "am9lam9lOmhlbGxv"  # joejoe:hello


def _cli_json(text: str) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        found = credentials_from_docker_config("docker.io",
                                               load_docker_config(_write(ctx, "c.json", text)))
        assert found is not None and (found.username, found.password) == ("joejoe", "hello")
    return check


def _cli_empty(text: str) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        assert user_of("docker.io", load_docker_config(_write(ctx, "c.json", text))) is None
    return check


def _cli_creds_store(ctx: Ctx) -> None:  # TestJSONWithCredentialStore
    config = {"auths": {"https://index.docker.io/v1/": {"auth": _JOEJOE}},
              "credsStore": "crazy-secure-storage"}
    assert "docker-credential-crazy-secure-storage" in helper_refused("docker.io", config)


def _cli_cred_helpers(ctx: Ctx) -> None:  # TestJSONWithCredentialHelpers
    config = {"auths": {"https://index.docker.io/v1/": {"auth": _JOEJOE}},
              "credHelpers": {"images.io": "images-io", "containers.com": "crazy-secure-storage"}}
    assert "docker-credential-images-io" in helper_refused("images.io", config)
    assert "docker-credential-crazy-secure-storage" in helper_refused("containers.com", config)
    assert user_of("docker.io", config) == "joejoe"


def _cli_helper_overrides_store(ctx: Ctx) -> None:
    # TestGetAllCredentialsCredHelperOverridesDefaultStore
    helper(ctx, {"example.com": {"Username": "cred_helper_user", "Secret": "cred_helper_pass"}})
    config = {"credsStore": "test_creds_store", "credHelpers": {"example.com": "regnbtest"}}
    assert user_of("example.com", config) == "cred_helper_user"


def _cli_file_and_helper(ctx: Ctx) -> None:  # TestGetAllCredentialsFileStoreAndCredHelper
    helper(ctx, {"credhelper.com": {"Username": "cred_helper_user", "Secret": "p"}})
    config = {"auths": {"example.com": {"auth": _encode_auth("file_store_user", "p")}},
              "credHelpers": {"credhelper.com": "regnbtest"}}
    assert user_of("example.com", config) == "file_store_user"
    assert user_of("credhelper.com", config) == "cred_helper_user"


def _cli_username_password(ctx: Ctx) -> None:  # TestLoadFromReaderWithUsernamePassword
    for entry in ({"username": "user", "password": "pass"}, {"auth": _encode_auth("user", "pass")}):
        found = credentials_from_docker_config("example.com/foo",
                                               {"auths": {"example.com/foo": entry}})
        assert found is not None and (found.username, found.password) == ("user", "pass")


def _native(answer: dict[str, str] | None, expect: Callable[[Any], None]
            ) -> Callable[[Ctx], None]:
    def check(ctx: Ctx) -> None:
        helper(ctx, {} if answer is None else {"example.com:5002": answer})
        config = {"credsStore": "regnbtest"}
        if answer is not None and "fail" in answer:
            assert "program failed" in helper_refused("example.com:5002", config)
            return
        expect(credentials_from_docker_config("example.com:5002", config))
    return check


def _expect_user(found: Any) -> None:
    assert found is not None and (found.username, found.password) == ("foo", "bar")


def _expect_identity(found: Any) -> None:
    assert found is not None and found.identity_token == "abcd1234" and found.username == ""


def _expect_none(found: Any) -> None:
    assert found is None


# ------------------------------------------------------------------ challenges


def _header(header: str, expected: list[tuple[str, dict[str, str]]]) -> Callable[[Ctx], None]:
    def check(_: Ctx) -> None:
        assert challenges(header) == expected
    return check


_SLASHED = ('Bearer realm="https://auth.example.com/token",service="registry.example.com",'
            'other=fun,slashed="he\\"\\l\\lo"')
_SLASHED_PARAMS = {"realm": "https://auth.example.com/token", "service": "registry.example.com",
                   "other": "fun", "slashed": 'he"llo'}
_PING_PARAMS = [  # TestChallengeParsing: parseChallenge (the part after the scheme)
    (38, 'foo="bar"', {"foo": "bar"}),
    (43, "foo", {"foo": ""}),
    (48, 'foo="bar",baz="blah"', {"foo": "bar", "baz": "blah"}),
    (54, 'baz="blah", foo="bar"', {"foo": "bar", "baz": "blah"}),
    (60, 'realm="https://gcr.io/v2/token", service="gcr.io", scope="repository:foo/bar:pull"',
     {"realm": "https://gcr.io/v2/token", "service": "gcr.io",
      "scope": "repository:foo/bar:pull"}),
]


def cited_vectors() -> Iterator[Vector]:
    """The hand-written tables, as checks."""
    def vector(table: str, where: str, check: Callable[[Ctx], None], **data: Any) -> Vector:
        return Vector("cited", table, where, data, check)

    for test, name, expected in _RESOLVE_NAME:
        yield vector("docker-py ResolveRepositoryNameTest",
                     f"{DOCKER_PY}::ResolveRepositoryNameTest.{test}",
                     _resolve_name(name, expected), name=name, expected=expected)
    for test, host, user in _RESOLVE_AUTH:
        yield vector("docker-py ResolveAuthTest", f"{DOCKER_PY}::ResolveAuthTest.{test}",
                     _resolve_auth(host, user), host=host, user=user)
    for test, check in (
        ("ResolveAuthTest.test_resolve_auth_with_empty_credstore_and_auth_dict",
         _empty_credstore),
        ("LoadConfigTest.test_load_config_custom_config_env_with_auths", _modern_json),
        ("LoadConfigTest.test_load_config_custom_config_env", _legacy_json),
        ("LoadConfigTest.test_load_legacy_config", _legacy_dockercfg),
        ("LoadConfigTest.test_load_config_custom_config_env_utf8", _utf8),
        ("LoadConfigTest.test_load_config_unknown_keys", _unknown_keys),
        ("LoadConfigTest.test_load_config_invalid_auth_dict", _invalid_auth_dict),
        ("LoadConfigTest.test_load_config_identity_token", _identity_token),
        ("CredstoreTest.test_get_credential_store", _credential_store),
        ("CredstoreTest.test_get_credential_store_no_default", _credential_store_no_default),
        ("CredstoreTest.test_get_credential_store_default_index",
         _credential_store_default_index),
    ):
        yield vector("docker-py auth", f"{DOCKER_PY}::{test}", check)

    hub = f'{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{_JOEJOE}"}}}}}}'
    hub_extra = ('{"auths": {"https://index.docker.io/v1/": {"auth": "' + _JOEJOE
                 + '", "email": "user@example.com"}}, "psFormat": "table {{.ID}}"}')
    for test, check in (
        ("TestEmptyFile", _cli_empty("")),
        ("TestEmptyJSON", _cli_empty("{}")),
        ("TestNewJSON", _cli_json(hub)),
        ("TestJSONWithPsFormat", _cli_json(hub_extra)),
        ("TestJSONWithCredentialStore", _cli_creds_store),
        ("TestJSONWithCredentialHelpers", _cli_cred_helpers),
    ):
        yield vector("docker/cli config_test.go", f"{CLI_CONFIG}::{test}", check)
    for test, check in (
        ("TestGetAllCredentialsCredHelperOverridesDefaultStore", _cli_helper_overrides_store),
        ("TestGetAllCredentialsFileStoreAndCredHelper", _cli_file_and_helper),
        ("TestLoadFromReaderWithUsernamePassword", _cli_username_password),
    ):
        yield vector("docker/cli file_test.go", f"{CLI_FILE}::{test}", check)
    for line, test, answer, expect in (  # the mock helper's "get" answers, lines 53-60
        (54, "TestNativeStoreGet", {"Username": "foo", "Secret": "bar"}, _expect_user),
        (56, "TestNativeStoreGetIdentityToken", {"Username": "<token>", "Secret": "abcd1234"},
         _expect_identity),
        (58, "TestNativeStoreGetMissingCredentials", None, _expect_none),
        (60, "TestNativeStoreGetInvalidAddress", {"fail": "program failed"}, _expect_none),
    ):
        yield vector("docker/cli native_store_test.go", f"{CLI_NATIVE}:{line}::{test}",
                     _native(answer, expect), answer=answer)

    for where in (DIST_CHALLENGE, GGCR_CHALLENGE):
        yield vector("TestAuthChallengeParse", f"{where}:14::TestAuthChallengeParse",
                     _header(_SLASHED, [("bearer", _SLASHED_PARAMS)]), header=_SLASHED)
    for line, params, expected in _PING_PARAMS:
        yield vector("ggcr TestChallengeParsing", f"{GGCR_PING}:{line}::TestChallengeParsing",
                     _header(f"Bearer {params}", [("bearer", expected)]), params=params)
    yield vector("ggcr ping", f"{GGCR_PING}::TestPingBasicChallengeNoParams",
                 _header("BASIC", [("basic", {})]))
    yield vector("ggcr ping", f"{GGCR_PING}::TestPingBearerChallengeWithParams",
                 _header('Bearer realm="http://auth.example.com/token"',
                         [("bearer", {"realm": "http://auth.example.com/token"})]))
