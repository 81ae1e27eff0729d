"""Behaviours of the registries the test proxy plays: auth, catalogs and tag lists.

Each behaviour is one row or bullet of ``/work/shared/docs/REGISTRIES.md`` (cited in
its docstring as "REGISTRIES.md: <column>, <sources>"); "unconf." marks a shape the
page could not confirm, chosen here so the behaviour can be played at all. The modes
that combine them are in ``registrymodes.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from registryproxy import (
    Behaviour,
    Exchange,
    Headers,
    Reply,
    basic_user,
    challenge_params,
    format_challenge,
    http_call,
)

from registry_nb.remote.challenges import token_grants

# ================================================================ auth


class BearerAuth(Behaviour):
    """Token auth as the registry shapes it: its own realm path and service, the
    challenge's scope and quoting, the fields of the token answer, and what an
    expired token meets.

    REGISTRIES.md, "Auth" column and section 3.3. The proxy serves the realm itself
    and forwards to the real token service (with the real service name), so tokens
    are real JWTs the registry verifies.
    """

    def __init__(self, realm_path: str, service: str, *, ping_scope: str | None = None,
                 ping_service: bool = True, quoted: bool | set[str] = True,
                 scheme: str = "Bearer",
                 answer: tuple[str, ...] = ("token", "access_token", "expires_in", "issued_at"),
                 post: bool = True, expired: str = "challenge",
                 refuse_action: str | None = None, delete_action: str = "delete") -> None:
        self.realm_path = realm_path
        self.service = service
        self.ping_scope = ping_scope
        self.ping_service = ping_service
        self.quoted = quoted
        self.scheme = scheme
        self.answer = answer
        self.post = post
        self.expired = expired
        self.refuse_action = refuse_action
        #: The action a token must grant for a manifest DELETE (Quay: ``push``).
        self.delete_action = delete_action
        #: A static token the registry takes as Bearer directly (GHCR's base64 PAT).
        self.pat: str | None = None

    @property
    def realm(self) -> str:
        return self.proxy.url + self.realm_path

    def before(self, ex: Exchange) -> Reply | None:
        if ex.path == self.realm_path:
            return self.token_endpoint(ex)
        token = ex.bearer()
        if token is not None and token in self.proxy.expired:
            if self.expired == "bare401":
                return expired_without_challenge()
            ex.headers.drop("Authorization")  # the registry challenges again
            ex.notes["invalid_token"] = True
        elif token is not None and self.pat is not None and token == self.pat:
            ex.headers.put("Authorization", "Bearer " + self.upstream_token(ex))
        elif token is not None and self.grants_delete(ex, token):
            # the registry takes its own delete convention; distribution behind wants delete
            ex.headers.put("Authorization", "Bearer " + self.upstream_token(ex))
        return None

    def grants_delete(self, ex: Exchange, token: str) -> bool:
        """True when ``token`` grants this mode's delete action for a DELETE of ``ex``
        that distribution itself would check under another action."""
        if ex.method != "DELETE" or not ex.name or self.delete_action == "delete":
            return False
        grants = token_grants(token) or frozenset()
        return ("repository", ex.name, self.delete_action) in grants

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        header = reply.headers.get("WWW-Authenticate")
        if reply.status != 401 or not header or ex.path == self.realm_path:
            return reply
        _, params = challenge_params(header)
        if ex.notes.get("invalid_token"):
            params["error"] = "invalid_token"
        ping = ex.kind == "ping"
        reply.headers.put("WWW-Authenticate", format_challenge(self.scheme, [
            ("realm", self.realm),
            ("service", self.service if self.ping_service or not ping else None),
            ("scope", self.ping_scope if ping else params.get("scope")),
            ("error", params.get("error")),
        ], quoted=self.quoted))
        return reply

    # -- the token endpoint

    def token_endpoint(self, ex: Exchange) -> Reply:
        upstream = self.proxy.upstream
        assert upstream.token_realm is not None and upstream.token_service is not None
        realm = urlsplit(upstream.token_realm)
        if ex.method == "POST":
            if not self.post:
                return Reply.text(404, "404 page not found")
            form = _with_service(parse_qsl(ex.body.decode(), keep_blank_values=True),
                                 upstream.token_service)
            scopes = " ".join(v for k, v in form if k == "scope").split()
            body = urlencode(form).encode()
            headers = Headers({"Content-Type": "application/x-www-form-urlencoded"})
            target, method = realm.path, "POST"
        else:
            query = _with_service(ex.query, upstream.token_service)
            scopes = [v for k, v in query if k == "scope"]
            body, method = b"", "GET"
            headers = Headers({k: v for k, v in ex.headers.items()
                               if k.lower() == "authorization"})
            target = realm.path + "?" + urlencode(query)
        if self.refuse_action and any(self.refuse_action in s.rsplit(":", 1)[-1].split(",")
                                      for s in scopes):
            return Reply.json(401, {"error": "unauthorized",
                                    "error_description": "Invalid scope requested"})
        reply = http_call(realm.hostname or "127.0.0.1", realm.port or 80, method, target,
                          headers, body, self.proxy.timeout)
        data = reply.data()
        if reply.status != 200 or not isinstance(data, dict):
            return reply
        self.proxy.issued.update(str(data[k]) for k in ("token", "access_token") if k in data)
        return Reply.json(200, {k: data[k] for k in self.answer if k in data})

    def upstream_token(self, ex: Exchange) -> str:
        """A real token for what ``ex`` needs, fetched with the proxy's own account."""
        upstream = self.proxy.upstream
        assert upstream.token_realm is not None
        realm = urlsplit(upstream.token_realm)
        scopes = [("scope", s) for s in _scopes_for(ex)]
        auth = base64.b64encode(f"{upstream.username}:{upstream.password}".encode()).decode()
        reply = http_call(realm.hostname or "127.0.0.1", realm.port or 80, "GET",
                          realm.path + "?" + urlencode([("service", upstream.token_service or
                                                         ""), *scopes]),
                          Headers({"Authorization": "Basic " + auth}), b"", self.proxy.timeout)
        return str(reply.data()["token"])


def _with_service(pairs: list[tuple[str, str]], service: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in pairs if k != "service"] + [("service", service)]


def _scopes_for(ex: Exchange) -> list[str]:
    if ex.kind == "catalog":
        return ["registry:catalog:*"]
    if not ex.name:
        return []
    actions = "pull,push,delete" if ex.method == "DELETE" else "pull,push"
    scopes = [f"repository:{ex.name}:{actions}"]
    if ex.param("from"):
        scopes.append(f"repository:{ex.param('from')}:pull")
    return scopes


def expired_without_challenge() -> Reply:
    """401 with no ``WWW-Authenticate``: REGISTRIES.md, Docker Hub "Auth" (an expired
    DHI token, docker/hub-feedback#2530) and GAR (c/image client.go)."""
    return Reply.errors(401, "UNAUTHORIZED", "authentication required")


class BasicAuth(Behaviour):
    """Basic auth with the registry's own challenge text (scheme case, realm, service).

    REGISTRIES.md, "Auth": ECR ``Basic realm="https://<acct>.dkr.ecr.<region>
    .amazonaws.com/",service="ecr.amazonaws.com"``, Artifactory ``Basic realm=
    "Artifactory Realm"`` (renovate), Nexus ``BASIC realm="Sonatype Nexus Repository
    Manager"`` (sonatype/nexus-public#921).
    """

    def __init__(self, challenge: str, *, expired: Callable[[], Reply] | None = None) -> None:
        self.challenge = challenge
        self.expired = expired

    def before(self, ex: Exchange) -> Reply | None:
        if self.expired is not None and self.proxy.credentials_expired and basic_user(ex.headers):
            return self.expired()
        return None

    def after(self, ex: Exchange, reply: Reply) -> Reply:
        if reply.status == 401:
            reply.headers.put("WWW-Authenticate", self.challenge)
        return reply


def ecr_token_expired() -> Reply:
    """REGISTRIES.md, ECR "Auth": once the 12-hour password expired, ``denied: Your
    authorization token has expired…`` (aws/aws-cli#6580), as a 403."""
    return Reply.errors(403, "DENIED", "Your authorization token has expired. "
                        "Reauthenticate and try again.")


# ================================================================ catalog


class CatalogRefused(Behaviour):
    """``/v2/_catalog`` refused with the registry's own answer.

    REGISTRIES.md, "Catalog": Docker Hub 401 ``UNAUTHORIZED`` (the catalog scope is
    never granted; genuinetools/reg#86), GitLab 401 admin-only (portainer#2956),
    Harbor 401 "unauthorized to list catalog" (goharbor/harbor#6784), GHCR has none
    (404 "404 page not found", microsoft/vscode-docker#1525).
    """

    def __init__(self, answer: Callable[[], Reply]) -> None:
        self.answer = answer

    def before(self, ex: Exchange) -> Reply | None:
        return self.answer() if ex.kind == "catalog" else None


def catalog_401(message: str) -> Callable[[], Reply]:
    def answer() -> Reply:
        return Reply.errors(401, "UNAUTHORIZED", message, WWW_Authenticate=(
            'Bearer realm="x",service="x",scope="registry:catalog:*",'
            'error="insufficient_scope"'))
    return answer


def no_such_page() -> Reply:
    return Reply.text(404, "404 page not found\n")


class AcrCatalog(Behaviour):
    """The catalog in pages with ACR's ``Link: </v2/_catalog?last=x&n=2&orderby=>``.

    REGISTRIES.md, ACR "Catalog" (ACR-doc). Page size when ``n`` is absent: 20
    (unconf.; small so that a test catalog spans pages).
    """

    default = 20

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind != "catalog" or ex.method != "GET":
            return None
        names: list[str] = []
        target = "/v2/_catalog?n=1000"
        while target:
            reply = self.proxy.forward(ex, target=target)
            if reply.status != 200:
                return reply
            names += reply.data().get("repositories") or []
            link = reply.headers.get("Link") or ""
            target = link[1:link.index(">")] if link.startswith("<") else ""
        n = min(int(ex.param("n") or self.default), 1000)
        last = ex.param("last") or ""
        page = [name for name in sorted(names) if name > last][:n]
        headers = {}
        if page and page[-1] != max(names):
            headers["Link"] = (f'</v2/_catalog?last={quote(page[-1], safe="")}&n={n}'
                               '&orderby=>; rel="next"')
        return Reply.json(200, {"repositories": page}, **headers)


# ================================================================ tag lists


class TagPager(Behaviour):
    """Answers tag lists itself, from the registry's full list, in pages of its style."""

    #: Page size when the client gives no ``n`` (None: the whole list).
    default: int | None = None
    oldest_first = False

    def before(self, ex: Exchange) -> Reply | None:
        if ex.kind != "tags" or ex.method != "GET":
            return None
        full = self.proxy.forward(ex, target=ex.path)
        if full.status != 200:
            return full
        tags = [str(t) for t in (full.data().get("tags") or [])]
        tags = self.by_age(ex.name or "", tags) if self.oldest_first else sorted(tags)
        return self.page(ex, tags)

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        raise NotImplementedError

    def size(self, ex: Exchange) -> int:
        given = ex.param("n")
        return int(given) if given else (self.default or 10**9)

    def by_age(self, repository: str, tags: list[str]) -> list[str]:
        """Oldest first, by when the registry wrote each tag."""
        def age(tag: str) -> tuple[int, str]:
            link = self.proxy.upstream.tag_link(repository, tag)
            return (link.stat().st_mtime_ns if link.exists() else 0, tag)
        return sorted(tags, key=age)

    @staticmethod
    def answer(ex: Exchange, tags: list[object], link: str | None = None,
               content_type: str = "application/json") -> Reply:
        headers = {"Content-Type": content_type}
        if link:
            headers["Link"] = link + '; rel="next"'
        return Reply(200, Headers(headers), json.dumps({"name": ex.name, "tags": tags}).encode())


class QuayTags(TagPager):
    """50 per page, oldest first, a relative opaque ``next_page`` cursor; ``last`` is
    ignored.

    REGISTRIES.md, Quay "Tags pagination": ``Link: </v2/x/tags/list?next_page=
    gAAAA…%3D&n=50>; rel="next"`` (regclient#272, deitch/docker_registry2#56).
    """

    default = 50
    oldest_first = True

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        n = self.size(ex)
        start = _decode_cursor(ex.param("next_page"))
        link = None
        if start + n < len(tags):
            cursor = quote(_encode_cursor(start + n), safe="")
            link = f"</v2/{ex.name}/tags/list?next_page={cursor}&n={n}>"
        return self.answer(ex, list(tags[start:start + n]), link)


def _encode_cursor(offset: int) -> str:
    payload = json.dumps({"offset": offset, "salt": secrets.token_hex(8)}).encode()
    while len(payload) % 3 == 0:  # Fernet-like tokens end in "=" (sent as %3D)
        payload += b" "
    return "gAAAAA" + base64.urlsafe_b64encode(payload).decode()


def _decode_cursor(value: str | None) -> int:
    if not value or not value.startswith("gAAAAA"):
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(value[6:]))["offset"])
    except (ValueError, KeyError):
        return 0


class EcrTags(TagPager):
    """Pages with an opaque ``last`` cursor, a ``text/plain`` body, 405 for ``n>1000``.

    REGISTRIES.md, ECR "Tags pagination": 100 per page, ``Link: <…?last=LONGOPAQUE>``,
    ``text/plain`` (deitch/docker_registry2#34, genuinetools/reg#206); ``n>1000`` gets
    405 ``UNSUPPORTED "Invalid parameter at 'maxResults'…"`` (ggcr#681). ECR Public:
    1000 per page, and a hand-built ``last`` gets 405 ``"Invalid parameter at
    'NextToken'…"`` (CodesWhat/drydock#927).
    """

    def __init__(self, default: int = 100) -> None:
        self.default = default
        self.cursors: dict[str, int] = {}

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        n = self.size(ex)
        if n > 1000:
            return Reply.errors(405, "UNSUPPORTED", "Invalid parameter at 'maxResults' failed "
                                "to satisfy constraint: 'Member must have value less than or "
                                "equal to 1000'")
        cursor = ex.param("last")
        if cursor is not None and cursor not in self.cursors:
            return Reply.errors(405, "UNSUPPORTED", "Invalid parameter at 'NextToken' failed to "
                                "satisfy constraint: 'Invalid next token'")
        start = self.cursors.get(cursor or "", 0)
        link = None
        if start + n < len(tags):
            token = base64.b64encode(secrets.token_bytes(96)).decode()
            self.cursors[token] = start + n
            link = f"</v2/{ex.name}/tags/list?last={quote(token, safe='')}>"
        return self.answer(ex, list(tags[start:start + n]), link,
                           content_type="text/plain; charset=utf-8")


class GhcrTags(TagPager):
    """100 per page by default, oldest first; a large ``n`` gets everything, no Link.

    REGISTRIES.md, GHCR "Tags pagination" (smg-project/smg#2348, renovate#36103).
    """

    default = 100
    oldest_first = True

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        n = self.size(ex)
        last = ex.param("last")
        start = tags.index(last) + 1 if last in tags else 0
        link = None
        if start + n < len(tags):
            link = f"</v2/{ex.name}/tags/list?last={quote(tags[start + n - 1], safe='')}&n={n}>"
        return self.answer(ex, list(tags[start:start + n]), link)


class AcrTags(TagPager):
    """``n`` over 1000 is silently 1000; ``Link: </v2/x/tags/list?last=v1&n=2&orderby=>``.

    REGISTRIES.md, ACR "Tags pagination" (ACR-doc, Azure/acr#749). Page size when ``n``
    is absent: 100 (unconf.).
    """

    default = 100

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        n = min(self.size(ex), 1000)
        last = ex.param("last") or ""
        rest = [t for t in tags if t > last]
        link = None
        if len(rest) > n:
            link = f"</v2/{ex.name}/tags/list?last={quote(rest[n - 1], safe='')}&n={n}&orderby=>"
        return self.answer(ex, list(rest[:n]), link)


class ArtifactoryTags(TagPager):
    """The ``next`` Link loses the first path component (the virtual repository), and
    lists hold digests.

    REGISTRIES.md, Artifactory "Tags pagination" (RTFACT-18971, renovate index.ts;
    containers/skopeo#2346). Page size when ``n`` is absent: 50 (unconf.).
    """

    default = 50

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        name = ex.name or ""
        junk = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        tags = sorted([*tags, junk])
        n = self.size(ex)
        last = ex.param("last") or ""
        rest = [t for t in tags if t > last]
        link = None
        if len(rest) > n:
            lost_prefix = name.split("/", 1)[-1]
            link = f"</v2/{lost_prefix}/tags/list?last={quote(rest[n - 1], safe='')}&n={n}>"
        return self.answer(ex, list(rest[:n]), link)


class NexusTags(TagPager):
    """No Link header ever (a page is all you get), and a JSON ``null`` in the list.

    REGISTRIES.md, Nexus "Tags pagination" (sonatype/nexus-public#117; c/image
    image.go, containers/skopeo#2409).
    """

    def page(self, ex: Exchange, tags: list[str]) -> Reply:
        return self.answer(ex, [*tags[:self.size(ex)], None])
