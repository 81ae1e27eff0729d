"""Mirror repositories from one registry into another (``skopeo sync``, regsync, crane copy).

:func:`sync_repositories` lists the source's tags, keeps those the filters match, and for
each one:

1. HEADs the tag on both sides: the same digest in the destination means ``present``
   (no manifest body, no blob traffic);
2. otherwise plans the copy (:func:`~registry_nb.images.copy.plan_copy`, manifests only)
   and copies it (:func:`~registry_nb.images.copy.copy_image`): blobs the destination
   repository has are skipped, blobs another repository of the destination already holds
   (put there earlier in this sync, or the source's own repository on the same registry)
   are mounted, a blob on its way into another repository is waited for and then mounted
   (sent by this copy when that upload fails), the rest stream through verified;
3. with ``referrers``, does the same for what is attached to the digest it wrote: the
   fallback tag ``sha256-<hex>`` and cosign's ``.sig``/``.att``/``.sbom`` tags, and the
   manifests the source's referrers API lists (skipped once the source answers 404:
   distribution 2.8 has no such API), one level after another.

Tags are the unit of work and of resumption: a copy tags nothing until every blob
arrived, so a second run after a failure finds the finished tags ``present`` and does
only what is left. Tags run ``workers`` at a time, each copy with ``workers //
concurrent tags`` blob threads, so at most ``workers`` transfers are in flight.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import (
    AuthenticationError,
    CredentialsRefusedError,
    NotFoundError,
    OperationCancelled,
    RegistryError,
    RegistryHTTPError,
)
from ..oci import OCI_INDEX, Descriptor
from ..oci.artifacts import (
    fallback_tag,
    merge_referrers,
    parse_digest_tag,
    parse_referrers_index,
    referrer_descriptor,
)
from ..oci.reference import normalize_registry
from ..progress import ProgressCallback, ProgressEvent
from ..remote.challenges import repository_scope
from ..remote.distribution import RegistryClient
from ..remote.responses import raise_for_status
from .copy import BlobSharing, CopyPlan, copy_image, plan_copy
from .image import RegistryRepository, short_id
from .listing import RegistryImages

__all__ = ["SyncRow", "sync_repositories", "mirrored_repositories", "source_images",
           "tag_matcher", "SYNC_STATUSES", "DEFAULT_WORKERS"]

log = logging.getLogger(__name__)

#: Transfers in flight at once, over the whole sync.
DEFAULT_WORKERS = 4
#: What a row's ``status`` can be (``missing``: a dry run found it absent, to be copied).
SYNC_STATUSES = ("copied", "present", "failed", "missing")
#: Levels of referrers followed (a signature of an SBOM attached to an image: 2).
REFERRER_DEPTH = 3


@dataclass(frozen=True)
class SyncRow:
    """One tag (or referrer by digest) of a sync and what became of it.

    ``kind`` is ``tag``, ``fallback``, ``sig``, ``att``, ``sbom`` (digest tags) or
    ``referrer`` (found by the referrers API, copied by digest, ``tag`` None);
    ``bytes`` counts blob bytes moved over the wire (0 for mounts and skips) and
    ``mounted`` the blobs mounted from another repository of the destination instead;
    in a dry run, a ``missing`` row's ``bytes`` is the size of the blobs the copy would
    check (those the destination holds are skipped then).
    """

    repository: str
    tag: str | None
    kind: str
    status: str
    digest: str | None
    bytes: int = 0
    error: str | None = None
    subject: str | None = None
    mounted: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict."""
        return asdict(self)


def tag_matcher(tags: str | re.Pattern[str] | Iterable[str | re.Pattern[str]] | None):
    """A predicate over tag names: None keeps all; a regex (or several) searched in the tag."""
    if tags is None:
        return lambda tag: True
    patterns = [tags] if isinstance(tags, (str, re.Pattern)) else list(tags)
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern) if isinstance(pattern, str) else pattern)
        except re.error as exc:
            raise RegistryError(f"the tag pattern {pattern!r} is not a regular expression "
                                f"({exc})", hint=r"Write tags as regular expressions, "
                                r"e.g. tags=[r'^v\d+', 'latest'].") from None
    return lambda tag: any(p.search(tag) for p in compiled)


@dataclass
class _Job:
    repository: str
    reference: str  # a tag, or a digest for referrers found by the API
    kind: str
    subject: str | None = None
    plan: CopyPlan | None = None
    source_digest: str | None = None

    @property
    def tag(self) -> str | None:
        return None if self.kind == "referrer" else self.reference


class _SharedBlobs:
    """Which destination repository holds, or is receiving, which blob in this sync.

    A blob on its way into one repository is waited for by copies into the others,
    which then mount it from there; a blob one repository holds is mounted into the
    others. When a send fails, a copy that was waiting sends it (the failed one waits
    and mounts, or sends again if nobody else wants the blob). A copy waits only while
    it sends nothing itself, so copies waiting on each other's blobs cannot block: each
    waits for bytes another is sending.
    """

    #: Seconds between the cancel checks of a waiting copy.
    POLL = 0.1

    def __init__(self, host: str) -> None:
        self.host = host
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.held: dict[str, str] = {}  # digest: the first repository that has it
        self.sending: dict[str, str] = {}  # digest: the repository it is on its way into
        self.waiting: dict[str, list[str]] = {}  # digest: repositories waiting for it
        self.failed: dict[str, set[str]] = {}  # digest: repositories whose send failed
        self.blob_locks: dict[tuple[str, str], threading.Lock] = {}

    def locks(self, repository: str, digests: Iterable[str]) -> list[threading.Lock]:
        """One lock per blob of a repository, in a fixed order: copies that share blobs
        take turns (two uploads of one blob into one repository race in distribution)."""
        with self.lock:
            return [self.blob_locks.setdefault((repository, d), threading.Lock())
                    for d in sorted(set(digests))]

    def into(self, repository: str) -> BlobSharing:
        """The :class:`~registry_nb.images.copy.BlobSharing` of one copy into ``repository``."""
        return _IntoRepository(self, repository)

    def wait_or_claim(self, repository: str, digest: str,
                      stop: Callable[[], None]) -> tuple[str | None, bool]:
        """(a repository holding the blob, False) to mount from, or (None, True): this
        caller sends it now, or (None, False): it is on its way into ``repository``
        itself (the upload layer sends it once)."""
        with self.changed:
            waiting = self.waiting.setdefault(digest, [])
            waiting.append(repository)
            try:
                while True:
                    held = self.held.get(digest)
                    if held is not None and held != repository:
                        return held, False
                    into = self.sending.get(digest)
                    if into == repository:
                        return None, False
                    if into is None and not self._defers(repository, digest):
                        self.sending[digest] = repository
                        return None, True
                    self.changed.wait(self.POLL)
                    stop()
            finally:
                waiting.remove(repository)

    def _defers(self, repository: str, digest: str) -> bool:
        """True when ``repository`` failed to send the blob and a copy that did not
        fail waits for it: that one sends it."""
        failed = self.failed.get(digest, set())
        return repository in failed and any(
            other not in failed for other in self.waiting.get(digest, ()))

    def land(self, repository: str, digest: str, claimed: bool, ok: bool) -> None:
        """A try at putting ``digest`` into ``repository`` ended (``ok``: it is there)."""
        with self.changed:
            if ok:
                self.held.setdefault(digest, repository)
            elif claimed:
                self.failed.setdefault(digest, set()).add(repository)
            if claimed and self.sending.get(digest) == repository:
                del self.sending[digest]
            self.changed.notify_all()


class _IntoRepository(BlobSharing):
    """One copy's view of :class:`_SharedBlobs`: its blobs go into ``repository``."""

    def __init__(self, shared: _SharedBlobs, repository: str) -> None:
        self.shared = shared
        self.repository = repository

    def present(self, descriptor: Descriptor) -> None:
        self.shared.land(self.repository, descriptor.digest, False, True)

    @contextmanager
    def turn(self, descriptor: Descriptor, origin: tuple[str, str] | None,
             stop: Callable[[], None]) -> Iterator[tuple[str, str] | None]:
        held, claimed = self.shared.wait_or_claim(self.repository, descriptor.digest, stop)
        landed = False
        try:
            yield (self.shared.host, held) if held is not None else origin
            landed = True
        finally:
            self.shared.land(self.repository, descriptor.digest, claimed, landed)


class _Stream:
    """The one progress stream of a sync: copies' final events demoted, one end."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if self.callback is None:
            return
        if event.is_final:
            event = ProgressEvent(phase="copy", message=event.message, status=event.phase)
        with self.lock:
            self.callback(event)

    def final(self, event: ProgressEvent) -> None:
        if self.callback is not None:
            with self.lock:
                self.callback(event)


@contextmanager
def source_images(source: RegistryImages | str, own: RegistryImages) -> Iterator[RegistryImages]:
    """``source`` as images: as given, ``own`` for its own host, or a client for another
    registry's URL (credentials from the docker config), closed at the end."""
    if isinstance(source, RegistryImages):
        yield source
        return
    if normalize_registry(source) == own.host:
        yield own
        return
    client = RegistryClient.connect(source, None, pool_size=max(own.workers, 4))
    try:
        yield RegistryImages(client, workers=own.workers)
    finally:
        client.close()


#: What to do when the source's catalog cannot be listed.
_NAME_THEM = ("Name the repositories to mirror, e.g. sync_repositories(source, "
              "['team/app', 'team/db']): each is then read with its own pull scope. Mirroring "
              "the whole catalog needs credentials the source allows to list it (token "
              "registries: the registry:catalog:* scope; Docker Hub, GHCR, GitLab and Harbor "
              "grant it to admins or not at all).")


def mirrored_repositories(source: RegistryImages,
                          repositories: str | re.Pattern[str] | Iterable[str] | None
                          ) -> list[str]:
    """The source's repositories a sync copies: those named (one name or several), or
    the catalog's (None), or the catalog's names a compiled regex finds (``search``).

    A catalog the source refuses or does not have raises the same error type, saying to
    name the repositories instead.
    """
    if repositories is not None and not isinstance(repositories, re.Pattern):
        return source.repository_names(repositories)
    try:
        names = source.repository_names(None)
    except RegistryError as exc:
        # a wrong password or an unreachable registry is not about the catalog
        if isinstance(exc, CredentialsRefusedError) or not (
                type(exc) is RegistryError  # Docker Hub: no catalog at all
                or isinstance(exc, (AuthenticationError, RegistryHTTPError))):
            raise
        message = f"cannot mirror the whole catalog of {source.host}: {exc.message}"
        if isinstance(exc, RegistryHTTPError):
            raise RegistryHTTPError(message, status=exc.status, code=exc.code,
                                    hint=_NAME_THEM) from exc
        kind = AuthenticationError if isinstance(exc, AuthenticationError) else RegistryError
        raise kind(message, hint=_NAME_THEM) from exc
    if repositories is None:
        return names
    return [name for name in names if repositories.search(name)]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def sync_repositories(
    source: RegistryImages,
    destination: RegistryImages,
    repositories: str | re.Pattern[str] | Iterable[str] | None = None,
    *,
    tags: Any = None,
    platforms: Any = None,
    referrers: bool = True,
    progress: ProgressCallback | None = None,
    workers: int = DEFAULT_WORKERS,
    cancel: threading.Event | None = None,
    dry_run: bool = False,
) -> list[SyncRow]:
    """Copy every matching tag of ``repositories`` (None: the source's catalog; a compiled
    regex: the catalog names it finds) from ``source`` into the same repository names of
    ``destination``; one row per tag.

    ``tags``: a regular expression or several (searched in the tag; None: every tag);
    digest tags (``sha256-…``) are never matched themselves, they travel with their
    subject when ``referrers`` is true. ``platforms`` is passed to
    :func:`~registry_nb.images.copy.plan_copy` (a subset of an index gets a new digest).
    Per-tag problems become ``failed`` rows and the rest goes on; a ``cancel`` marks
    what was not done ``failed`` with ``OperationCancelled``. Errors before any tag
    (listing the catalog, bad patterns) raise. ``dry_run`` reads both sides (HEADs,
    manifests, the source's referrers) and writes nothing: each tag is ``present`` or
    ``missing`` (what a sync would copy).
    """
    match = tag_matcher(tags)
    workers = max(1, workers)
    stream = _Stream(progress)
    shared = _SharedBlobs(destination.host)
    names = mirrored_repositories(source, repositories)
    listed = source.map(lambda name: sorted(source.client.tags(name)), names)
    repo_tags = dict(zip(names, listed, strict=True))
    jobs = [_Job(name, tag, "tag") for name in names for tag in repo_tags[name]
            if parse_digest_tag(tag) is None and match(tag)]
    rows: list[SyncRow] = []
    api = {"source": True, "destination": True}
    done: set[tuple[str, str]] = set()
    depth = 0
    while jobs:
        level = _run_level(source, destination, jobs, platforms, workers, stream, shared,
                           cancel, dry_run)
        rows.extend(level)
        if not dry_run:
            _index_api_referrers(destination, level, api)
        if not referrers or depth >= REFERRER_DEPTH:
            break
        depth += 1
        jobs = []
        for row in level:
            if row.status == "failed" or row.digest is None or \
                    (row.repository, row.digest) in done:
                continue
            done.add((row.repository, row.digest))
            jobs.extend(_referrer_jobs(source, row.repository, row.digest,
                                       repo_tags.get(row.repository, []), api))
    copied = sum(r.status == "copied" for r in rows)
    present = sum(r.status == "present" for r in rows)
    failed = sum(r.status == "failed" for r in rows)
    summary = f"Synced {len(rows)} tags from {source.host}: {copied} copied, " \
              f"{present} present, {failed} failed"
    if dry_run:
        missing = sum(r.status == "missing" for r in rows)
        summary = f"Dry run of {len(rows)} tags from {source.host}: {missing} to copy, " \
                  f"{present} present, {failed} failed; nothing was written"
    if cancel is not None and cancel.is_set():
        stream.final(ProgressEvent(phase="cancelled", message=summary))
    elif failed:
        stream.final(ProgressEvent(
            phase="failed", message=f"Sync from {source.host} not finished: {failed} of "
            f"{len(rows)} tags failed, {copied} copied, {present} present; run it again to "
            "copy what is left"))
    else:
        stream.final(ProgressEvent(phase="done", message=summary, status="done"))
    return rows


def _referrer_jobs(source: RegistryImages, repository: str, digest: str, tags: list[str],
                   api: dict[str, bool]) -> list[_Job]:
    """Digest tags naming ``digest``, and what the source's referrers API lists for it."""
    jobs = []
    for tag in tags:
        parsed = parse_digest_tag(tag)
        if parsed is not None and parsed.names(digest):
            jobs.append(_Job(repository, tag, parsed.kind, subject=digest))
    if api["source"]:
        found = _api_referrers(source, repository, digest)
        api["source"] = found is not None  # a 404 turns the API off for this sync
        jobs.extend(_Job(repository, d.digest, "referrer", subject=digest)
                    for d in found or [])
    return jobs


def _api_referrers(images: RegistryImages, repository: str,
                   digest: str) -> list[Descriptor] | None:
    """``GET /v2/<name>/referrers/<digest>``; None when the registry has no such API."""
    response = images.client.transport.request(
        "GET", f"/v2/{repository}/referrers/{digest}", scopes=[repository_scope(repository)],
        headers={"Accept": OCI_INDEX})
    try:
        if response.status_code in (404, 405):
            return None
        raise_for_status(response, f"list the referrers of {repository}@{digest}")
        return parse_referrers_index(response.content)
    finally:
        response.close()


def _index_api_referrers(destination: RegistryImages, rows: list[SyncRow],
                         api: dict[str, bool]) -> None:
    """Referrers copied by digest are listed in the destination's fallback tag
    ``sha256-<hex>`` of their subject, unless the destination has a referrers API."""
    by_subject: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row.kind == "referrer" and row.status == "copied" and row.subject and row.digest:
            by_subject.setdefault((row.repository, row.subject), []).append(row.digest)
    for (repository, subject), digests in by_subject.items():
        if api["destination"]:
            api["destination"] = _api_referrers(destination, repository, subject) is not None
            if api["destination"]:
                continue  # the destination indexes them itself
        tag = fallback_tag(subject)
        try:
            existing: bytes | None = destination.client.get_manifest(repository, tag).raw
        except NotFoundError:
            existing = None
        added = [referrer_descriptor(destination.client.get_manifest(repository, d).raw)
                 for d in digests]
        merged = merge_referrers(existing, add=added)
        destination.client.put_manifest(repository, tag, merged, OCI_INDEX)


def _run_level(source: RegistryImages, destination: RegistryImages, jobs: list[_Job],
               platforms: Any, workers: int, stream: _Stream, shared: _SharedBlobs,
               cancel: threading.Event | None, dry_run: bool = False) -> list[SyncRow]:
    """Plan every job (HEADs, manifests), announce the bytes, then copy what is missing
    (``dry_run``: report it ``missing``)."""
    def plan(job: _Job) -> SyncRow | _Job:
        if cancel is not None and cancel.is_set():
            return _cancelled(job)
        try:
            return _plan(source, destination, job, None if job.kind != "tag" else platforms)
        except RegistryError as exc:
            return SyncRow(job.repository, job.tag, job.kind, "failed", None, 0, _error(exc),
                           job.subject)

    planned = _map(plan, jobs, max(workers, 8))
    if dry_run:
        return [_missing(p) if isinstance(p, _Job) else p for p in planned]
    todo = [p for p in planned if isinstance(p, _Job)]
    blobs: dict[str, int] = {}
    for job in todo:
        assert job.plan is not None
        blobs.update((d.digest, d.size) for d in job.plan.blobs)
    stream(ProgressEvent(phase="copy", total=sum(blobs.values()),
                         message=f"{len(jobs)} tags: {len(todo)} to copy, "
                         f"{len(jobs) - len(todo)} present or failed, {len(blobs)} blobs"))
    for digest, size in blobs.items():  # every layer known up front: bars show the whole sync
        stream(ProgressEvent(phase="upload", layer=short_id(digest), current=0, total=size,
                             status="Waiting"))
    blob_workers = max(1, workers // max(1, min(workers, len(todo))))

    def copy(job: _Job) -> SyncRow:
        if cancel is not None and cancel.is_set():
            return _cancelled(job)
        assert job.plan is not None
        store = RegistryRepository(source.client, job.repository)
        locks = shared.locks(job.repository, (d.digest for d in job.plan.blobs))
        try:
            with ExitStack() as held:
                for lock in locks:
                    held.enter_context(lock)
                result = copy_image(store, destination.repository(job.repository),
                                    tag=job.tag, plan=job.plan, workers=blob_workers,
                                    progress=stream, cancel=cancel,
                                    sharing=shared.into(job.repository))
        except OperationCancelled:
            return _cancelled(job)
        except RegistryError as exc:
            return SyncRow(job.repository, job.tag, job.kind, "failed", job.plan.top.digest, 0,
                           _error(exc), job.subject)
        stream(ProgressEvent(phase="copy", message=f"{job.repository}:{job.reference} "
                             f"copied ({result.digest})", status="copied"))
        return SyncRow(job.repository, job.tag, job.kind, "copied", result.digest,
                       result.bytes_copied, None, job.subject, result.mounted_blobs)

    copied = iter(_map(copy, todo, workers))
    return [next(copied) if isinstance(p, _Job) else p for p in planned]


def _plan(source: RegistryImages, destination: RegistryImages, job: _Job,
          platforms: Any) -> SyncRow | _Job:
    head = source.client.head_manifest(job.repository, job.reference)
    if head is None:
        raise RegistryError(f"{source.host}/{job.repository}:{job.reference} is gone from "
                            "the source", hint="It was deleted while the sync ran.")
    there = destination.client.head_manifest(job.repository, job.reference)
    if platforms is None and head.digest and there is not None and there.digest == head.digest:
        return SyncRow(job.repository, job.tag, job.kind, "present", head.digest, 0, None,
                       job.subject)
    job.plan = plan_copy(RegistryRepository(source.client, job.repository), job.reference,
                         platforms=platforms)
    job.source_digest = head.digest
    if there is not None and there.digest == job.plan.top.digest:
        return SyncRow(job.repository, job.tag, job.kind, "present", there.digest, 0, None,
                       job.subject)
    return job


def _missing(job: _Job) -> SyncRow:
    assert job.plan is not None
    return SyncRow(job.repository, job.tag, job.kind, "missing", job.plan.top.digest,
                   job.plan.size_bytes, None, job.subject)


def _cancelled(job: _Job) -> SyncRow:
    return SyncRow(job.repository, job.tag, job.kind, "failed", None, 0,
                   "OperationCancelled: the sync was cancelled before this tag was copied",
                   job.subject)


def _map(func, items: list, workers: int) -> list:
    if len(items) <= 1:
        return [func(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)),
                            thread_name_prefix="registry-nb-sync") as pool:
        return list(pool.map(func, items))
