"""Copy images between stores without a Docker engine.

:func:`copy_image` moves an image or a multi-platform index from any
:class:`~registry_nb.image.ImageStore` to any :class:`~registry_nb.image.ImageSink`:

1. plan: read the top manifest and (for an index) the chosen children;
2. blobs, on a bounded pool of threads: skip those the destination has (HEAD),
   mount those another repository of the same registry holds, stream the rest
   chunk by chunk (bounded memory) with their digest verified on the way;
3. child manifests by digest, then the top manifest under its tag.

Nothing is tagged unless every blob arrived intact: on a failure or a cancel the
destination has no new manifest under the tag (and an OCI layout drops the blobs
this copy wrote). Progress goes out as :class:`~registry_nb.progress.ProgressEvent`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import (
    ManifestNotFoundError,
    OperationCancelled,
    RegistryError,
    RegistryUnavailableError,
)
from ..oci import Descriptor, ImageConfig, Index, Manifest, Platform
from ..oci.convert import is_docker_media_type, to_oci
from ..progress import ProgressCallback, ProgressEvent
from .image import ImageSink, ImageStore, short_id
from .layout import OCILayout, validate_ref_name

__all__ = ["CopyResult", "CopyPlan", "BlobSharing", "plan_copy", "plan_as_oci", "copy_image",
           "save_to_layout", "DEFAULT_WORKERS", "BLOB_ATTEMPTS", "DOCKER_LAYOUT_NOTE"]

log = logging.getLogger(__name__)

#: Blobs moved at the same time.
DEFAULT_WORKERS = 4
#: Times a blob is tried when a connection fails beyond what the client resumes.
BLOB_ATTEMPTS = 3


@dataclass(frozen=True)
class CopyPlan:
    """What a copy will write: blobs, child manifests (in order), the top manifest."""

    top: Manifest | Index
    children: list[Manifest | Index]
    blobs: list[Descriptor]  # each digest once
    platforms: list[str] | None

    @property
    def size_bytes(self) -> int:
        """Bytes of every blob (what a copy into an empty destination moves)."""
        return sum(d.size for d in self.blobs)


@dataclass(frozen=True)
class CopyResult:
    """What a copy did."""

    source: str
    destination: str
    digest: str
    media_type: str
    platforms: list[str] | None
    blobs: int
    copied_blobs: int
    mounted_blobs: int
    existing_blobs: int
    bytes_copied: int
    size_bytes: int
    duration_seconds: float

    def as_dict(self) -> dict[str, Any]:
        """``{"status": "success", ...}`` with every field."""
        return {"status": "success", **asdict(self)}


def _platform_list(platforms: str | Platform | Iterable[str | Platform] | None
                   ) -> list[Platform] | None:
    if platforms is None:
        return None
    if isinstance(platforms, (str, Platform)):
        platforms = [platforms]
    result = [p if isinstance(p, Platform) else Platform.parse(p) for p in platforms]
    return result or None


def _skippable(descriptor: Descriptor) -> bool:
    """Foreign / non-distributable layers with URLs are not copied (registries refuse them)."""
    kind = descriptor.media_type
    return bool(descriptor.urls) and ("foreign" in kind or "nondistributable" in kind)


def plan_copy(source: ImageStore, reference: str | None = None, *,
              platforms: str | Platform | Iterable[str | Platform] | None = None) -> CopyPlan:
    """Read the manifests of what a copy of ``reference`` will write.

    ``platforms=None`` copies an index whole (every child, nested indexes too). One
    platform copies that platform's image manifest alone (the destination tag names
    an image, not an index); several copy a new index of just those entries (same
    media type and annotations, so its digest differs from the source's).
    """
    top = source.get_manifest(reference)
    wanted = _platform_list(platforms)
    children: list[Manifest | Index] = []
    chosen: list[str] | None = None
    if isinstance(top, Index) and wanted:
        entries = []
        for platform in wanted:
            entry = top.select(platform)
            if entry.digest not in {e.digest for e in entries}:
                entries.append(entry)
        chosen = [str(e.platform) for e in entries if e.platform is not None]
        if len(entries) == 1:
            top = source.get_manifest(entries[0].digest)
        else:
            top = Index.build(entries, top.media_type, top.annotations)
    elif isinstance(top, Manifest) and wanted:
        config = ImageConfig.from_bytes(source.read_blob(top.config))
        if not any(p.matches(config.platform) for p in wanted):
            raise ManifestNotFoundError(
                f"{source.describe()}: {reference or 'the image'} is a single image for "
                f"{config.platform}, not {', '.join(str(p) for p in wanted)}",
                hint="Leave platforms out to copy it as it is.",
            )
        chosen = [str(config.platform)]
    elif isinstance(top, Index):
        chosen = [str(p) for p in top.platforms]

    blobs: dict[str, Descriptor] = {}

    def visit(manifest: Manifest | Index, depth: int) -> None:
        if isinstance(manifest, Manifest):
            for descriptor in (manifest.config, *manifest.layers):
                if not _skippable(descriptor):
                    blobs.setdefault(descriptor.digest, descriptor)
            return
        if depth > 4:
            raise RegistryError(f"{source.describe()}: indexes nested more than 4 deep")
        for entry in manifest.manifests:
            child = source.get_manifest(entry.digest)
            visit(child, depth + 1)
            children.append(child)

    visit(top, 0)
    return CopyPlan(top=top, children=children, blobs=list(blobs.values()), platforms=chosen)


def plan_as_oci(plan: CopyPlan) -> CopyPlan:
    """``plan`` with its manifests in OCI media types (Docker schema 2 converted).

    Blobs are unchanged (same bytes, same digests); converted manifests are new
    documents, so the top digest changes, as it does when skopeo writes OCI.
    """
    converted: dict[str, Manifest | Index] = {}
    children = []
    for child in plan.children:  # children come before the indexes that list them
        new = to_oci(child, converted)
        converted[child.digest] = new
        children.append(new)
    return replace(plan, top=to_oci(plan.top, converted), children=children)


class BlobSharing:
    """How one copy's blobs meet other copies into the same registry running at once.

    This base shares nothing: a blob is mounted from where the source says it lives
    (:meth:`~registry_nb.images.image.ImageStore.blob_origin`), else sent. A mirror of
    many repositories (:mod:`registry_nb.images.sync`) overrides it so that a blob on
    its way into another repository is waited for and then mounted from there.
    """

    def present(self, descriptor: Descriptor) -> None:
        """The destination was found to hold ``descriptor`` already."""

    @contextmanager
    def turn(self, descriptor: Descriptor, origin: tuple[str, str] | None,
             stop: Callable[[], None]) -> Iterator[tuple[str, str] | None]:
        """Around one try at mounting or sending ``descriptor``; yields where to mount it
        from (``origin``, the source's answer, or another; None: send the bytes).

        Leaving normally means the destination now holds the blob, leaving by an
        exception that this try failed. ``stop`` raises when the copy is cancelled or
        abandoned; an implementation that waits calls it while it waits.
        """
        yield origin


#: The copy that shares nothing with others.
NO_SHARING = BlobSharing()


class _Emitter:
    """Serialises progress callbacks coming from the worker threads."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        if self.callback is None:
            return
        with self.lock:
            self.callback(event)


class _Abandoned(Exception):
    """Raised in workers once another blob failed."""


def copy_image(
    source: ImageStore,
    destination: ImageSink,
    *,
    reference: str | None = None,
    tag: str | None = None,
    platforms: str | Platform | Iterable[str | Platform] | None = None,
    workers: int = DEFAULT_WORKERS,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    plan: CopyPlan | None = None,
    sharing: BlobSharing = NO_SHARING,
) -> CopyResult:
    """Copy the image ``reference`` names in ``source`` to ``destination`` as ``tag``.

    ``tag=None`` stores the top manifest by digest (registry) or as an untagged
    index entry (layout). See :func:`plan_copy` for ``platforms``. ``cancel`` (a
    ``threading.Event``) stops the copy between chunks with
    :class:`OperationCancelled`. Raises what the failing blob raised
    (:class:`DigestMismatchError` for corrupt content) after the other workers
    stopped; nothing is tagged then.
    """
    started = time.monotonic()
    emit = _Emitter(progress)
    what = f"{source.describe()} to {destination.describe()}"
    phase = destination.transfer_phase
    abandon = threading.Event()
    written: list[str] = []
    written_lock = threading.Lock()
    counts = {"copied": 0, "mounted": 0, "existing": 0, "bytes": 0}

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise OperationCancelled(f"copy of {what} cancelled; nothing was tagged")
        if abandon.is_set():
            raise _Abandoned

    def move(descriptor: Descriptor) -> tuple[str, int]:
        check()
        layer = short_id(descriptor.digest)
        size = descriptor.size
        if destination.has_blob(descriptor):
            sharing.present(descriptor)
            emit(ProgressEvent(phase="copy", layer=layer, current=size, total=size,
                               message=f"{layer}: Already exists", status="Already exists",
                               completed=True))
            return "existing", 0

        def report(done: int, total: int | None) -> None:
            emit(ProgressEvent(phase=phase, layer=layer, current=done, total=total or size,
                               message=f"{layer}: {phase} {done}/{total or size} bytes",
                               status="Downloading" if phase == "download" else "Pushing"))

        for attempt in range(1, BLOB_ATTEMPTS + 1):
            check()
            try:
                with sharing.turn(descriptor, source.blob_origin(descriptor), check) as origin:
                    if origin is not None and destination.mount_blob(descriptor, origin):
                        status = f"Mounted from {origin[1]}"
                        emit(ProgressEvent(phase="copy", layer=layer, current=size,
                                           total=size, message=f"{layer}: {status}",
                                           status=status, completed=True))
                        return "mounted", 0
                    moved = destination.write_blob(descriptor, source, progress=report,
                                                   stop=check)
                break
            except RegistryUnavailableError as exc:
                if attempt == BLOB_ATTEMPTS:
                    raise
                log.info("blob %s failed (%s); trying again (%d/%d)", descriptor.digest, exc,
                         attempt + 1, BLOB_ATTEMPTS)
                emit(ProgressEvent(phase="copy", layer=layer,
                                   message=f"{layer}: connection lost, retrying",
                                   status="Retrying"))
        with written_lock:
            written.append(descriptor.digest)
        status = "Download complete" if phase == "download" else "Pushed"
        emit(ProgressEvent(phase="copy", layer=layer, current=size, total=size,
                           message=f"{layer}: {status}", status=status, completed=True))
        return "copied", moved

    try:
        check()
        if plan is None:
            plan = plan_copy(source, reference, platforms=platforms)
        emit(ProgressEvent(phase="copy", total=plan.size_bytes,
                           message=f"Copying {what}: {len(plan.blobs)} blobs, "
                           f"{plan.size_bytes} bytes"))
        _run(plan.blobs, move, workers, abandon, counts)
        check()
        for child in plan.children:
            destination.put_manifest(child, None, top=False)
            with written_lock:
                written.append(child.digest)
        check()
        destination.put_manifest(plan.top, tag, top=True)
    except BaseException as exc:
        try:
            destination.discard(written)
        except Exception:  # pragma: no cover - cleanup is best effort
            log.exception("could not discard the blobs of a failed copy")
        if isinstance(exc, OperationCancelled):
            emit(ProgressEvent(phase="cancelled", message=exc.message))
        elif isinstance(exc, RegistryError):
            emit(ProgressEvent(phase="failed", message=exc.message))
        raise
    result = CopyResult(
        source=source.describe(), destination=destination.describe(),
        digest=plan.top.digest, media_type=plan.top.media_type, platforms=plan.platforms,
        blobs=len(plan.blobs), copied_blobs=counts["copied"], mounted_blobs=counts["mounted"],
        existing_blobs=counts["existing"], bytes_copied=counts["bytes"],
        size_bytes=plan.size_bytes, duration_seconds=round(time.monotonic() - started, 3),
    )
    emit(ProgressEvent(phase="done", current=plan.size_bytes, total=plan.size_bytes,
                       message=f"Copied {what} ({plan.top.digest})", status="done"))
    return result


def _run(blobs: Sequence[Descriptor], move: Callable[[Descriptor], tuple[str, int]],
         workers: int, abandon: threading.Event, counts: dict[str, int]) -> None:
    """Move ``blobs`` on a bounded pool; on the first failure stop the rest and raise it."""
    if not blobs:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(blobs))),
                              thread_name_prefix="registry-nb-copy")
    futures = [pool.submit(move, d) for d in blobs]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and not f.cancelled() and f.exception()]
        if failed:
            real = [f for f in failed if not isinstance(f.exception(), _Abandoned)]
            raise (real or failed)[0].exception()  # type: ignore[misc]
        for future in futures:
            outcome, moved = future.result()
            counts[outcome] += 1
            counts["bytes"] += moved
    except BaseException:
        abandon.set()
        for future in futures:
            future.cancel()
        raise
    finally:
        pool.shutdown(wait=True)  # running workers stop at their next chunk


#: What ``save_to_layout`` says when Docker schema 2 media types were kept.
DOCKER_LAYOUT_NOTE = ("Docker schema 2 media types kept (preserve_digests=True): skopeo 1.9, "
                      "podman 4.3 and umoci 0.4 do not read this layout by tag.")


def save_to_layout(source: ImageStore, reference: str, path: str | os.PathLike[str], *,
                   image_name: str, ref_name: str, preserve_digests: bool = False,
                   platforms: str | Platform | Iterable[str | Platform] | None = None,
                   progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> tuple[CopyResult, dict[str, Any]]:
    """Copy ``reference`` of ``source`` into the OCI layout ``path`` as ``ref_name``.

    The entry also carries ``image_name`` (the full reference) as
    ``io.containerd.image.name``; a ``ref_name`` the layout gives another image raises
    :class:`~registry_nb.errors.LayoutNameConflictError` before anything is written.
    Docker schema 2 is written with OCI media types (:func:`plan_as_oci`) unless
    ``preserve_digests``. Returns the copy's result and ``path``, ``tag``,
    ``source_digest`` (the source's top digest) and ``note`` (set when Docker media
    types were kept).
    """
    name = validate_ref_name(ref_name)
    layout = OCILayout(path, image_name=image_name)
    layout.refuse_name_conflict(name, image_name)
    plan = plan_copy(source, reference, platforms=platforms)
    source_digest = plan.top.digest
    if not preserve_digests:
        plan = plan_as_oci(plan)
    result = copy_image(source, layout, tag=name, plan=plan, progress=progress, cancel=cancel)
    note = DOCKER_LAYOUT_NOTE if is_docker_media_type(result.media_type) else None
    return result, {"path": str(layout.path), "tag": name, "source_digest": source_digest,
                    "note": note}
