"""Fleets: the facade's frames over many registries, locally or on a Dask cluster.

``Fleet([reg, "127.0.0.1:5001"], client=None)`` runs in threads of this process with
the facades' own concurrency; ``client=dask.distributed.Client(...)`` splits the work
into tasks: one per repository for listings, one per *unique layer digest* for layer
reads, one per unique image for stacking its layers (no I/O), so the cost of an audit
grows with the distinct layers of the fleet, not with its tags. Layer scans are kept
by digest in a :class:`~registry_nb.images.layer_cache.LayerCache` (a folder or any
fsspec URL the workers share), so a second audit reads no layer at all.

Workers never receive a secret in plain text: a facade built with explicit credentials
travels as a :class:`~registry_nb.fleet.spec.RegistrySpec` holding them sealed (the
pad reaches workers through a worker plugin, see :mod:`.spec`); a URL or a facade
without credentials makes workers read their own docker config.
"""

from __future__ import annotations

import concurrent.futures
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OperationCancelled
from ..frames import PACKAGE_COLUMNS, build_frame
from ..images.layer_cache import LayerCache
from ..images.listing import display_name
from ..progress import ProgressCallback, ProgressEvent
from . import tasks
from .spec import RegistrySpec, SealedCredentials, spec_of

if TYPE_CHECKING:
    import pandas as pd

    from ..registry import ContainerRegistry

__all__ = ["Fleet", "FleetStats", "LayerCache", "RegistrySpec", "SealedCredentials",
           "FLEET_AUDIT_COLUMNS", "FLEET_PACKAGE_COLUMNS"]

#: Columns the fleet's audit adds to the facade's (from the layers, stacked).
FLEET_AUDIT_COLUMNS: dict[str, str] = {
    "image_digest": "string",
    "uncompressed_size_bytes": "Int64",
    "file_count": "Int64",
    "file_bytes": "Int64",
    "wasted_bytes": "Int64",
    "efficiency": "float64",
    "package_count": "Int64",
    "layer_error": "string",
}
#: One row per package per tag (``Fleet.packages_frame``).
FLEET_PACKAGE_COLUMNS: dict[str, str] = {
    "registry_url": "string", "repository": "string", "tag": "string",
    "image_digest": "string", **PACKAGE_COLUMNS,
}
_POLL_SECONDS = 0.2


@dataclass
class FleetStats:
    """What the last layer pass did: tags, images, layers, and how many blobs it read."""

    tags: int = 0
    images: int = 0
    layer_references: int = 0  # layers of every tag, counted per tag (a naive audit's reads)
    unique_layers: int = 0
    layers_read: int = 0  # blobs streamed from a registry
    cache_hits: int = 0  # layers answered by the layer cache


class Fleet:
    """Many registries read as one: frames with a ``registry_url`` column.

    ``registries`` are :class:`~registry_nb.registry.ContainerRegistry` objects or
    URLs. ``client`` is a ``dask.distributed.Client`` or None (threads here). ``cache``
    is a :class:`LayerCache`, a folder or fsspec URL every worker can reach, or None (in
    memory: this process for a local fleet; with a client, layers are still read once
    per audit but not kept between audits). ``retries`` is passed to every Dask task.
    """

    def __init__(self, registries: Iterable[ContainerRegistry | str], client: Any = None, *,
                 cache: LayerCache | str | Path | None = None, retries: int = 2) -> None:
        from ..registry import ContainerRegistry

        self.registries: list[ContainerRegistry] = [
            r if isinstance(r, ContainerRegistry) else ContainerRegistry(r) for r in registries]
        if not self.registries:
            raise ValueError("a fleet needs at least one registry")
        self.client = client
        self.retries = retries
        if isinstance(cache, LayerCache):
            self.cache: LayerCache | None = cache
        elif cache is not None:
            self.cache = LayerCache(cache)
        else:
            self.cache = LayerCache() if client is None else None
        #: The Dask futures of the running (or last) step: ``distributed.progress(fleet.futures)``.
        self.futures: list[Any] = []
        self.stats = FleetStats()
        self._run = secrets.token_hex(4)
        self._plugin: str | None = None
        if client is None:
            self._targets: list[Any] = list(self.registries)
        else:
            self._targets = [spec_of(r) for r in self.registries]
            self._install_keys()

    def __repr__(self) -> str:
        where = "local" if self.client is None else "dask"
        return f"Fleet({[r.registry_host for r in self.registries]!r}, {where})"

    def _install_keys(self) -> None:
        pads = {s.credentials.key_id: s.credentials.pad() for s in self._targets
                if s.credentials is not None}
        if not pads:
            return
        from .keys import FleetKeys

        self._plugin = f"registry-nb-fleet-keys-{self._run}"
        self.client.register_plugin(FleetKeys(pads, self._plugin), name=self._plugin)

    def close(self) -> None:
        """Remove the key plugin from the cluster (sealed credentials stop opening there)."""
        if self._plugin is not None and self.client is not None:
            self.client.unregister_worker_plugin(self._plugin)
            self._plugin = None

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ running work

    def _submit(self, pool: Any, name: str, func: Callable[..., Any], *args: Any) -> Any:
        if self.client is None:
            return pool.submit(_call_resolved, func, args)
        key = f"fleet-{name}-{self._run}-{secrets.token_hex(6)}"
        return self.client.submit(func, *args, key=key, retries=self.retries, pure=False)

    def _gather(self, futures: list[Any], step: str, progress: ProgressCallback | None,
                cancel: threading.Event | None) -> list[Any]:
        """Wait for ``futures`` (reporting each one done), then their results in order."""
        self.futures = futures
        pending = set(futures)
        total = len(futures)
        while pending:
            if cancel is not None and cancel.is_set():
                self._cancel(futures)
                if progress:
                    progress(ProgressEvent("cancelled", message=f"fleet {step} cancelled"))
                raise OperationCancelled(f"the fleet's {step} was cancelled; its remaining "
                                         "tasks were stopped.", hint="Run it again to finish.")
            done = self._wait_some(pending)
            pending -= done
            if done and progress:
                progress(ProgressEvent("fleet", current=total - len(pending), total=total,
                                       status=step, completed=not pending,
                                       message=f"{step}: {total - len(pending)}/{total}"))
        if self.client is None:
            return [f.result() for f in futures]
        return self.client.gather(futures)

    def _wait_some(self, pending: set[Any]) -> set[Any]:
        if self.client is None:
            done, _ = concurrent.futures.wait(pending, timeout=_POLL_SECONDS,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            return set(done)
        from distributed import wait

        try:
            done, _ = wait(list(pending), timeout=_POLL_SECONDS, return_when="FIRST_COMPLETED")
        except TimeoutError:
            return set()
        return set(done)

    def _cancel(self, futures: list[Any]) -> None:
        if self.client is None:
            for future in futures:
                future.cancel()
        else:
            self.client.cancel(futures)

    def _pool(self) -> Any:
        if self.client is not None:
            return _NoPool()
        workers = max(r.max_workers for r in self.registries)
        return concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="registry-nb")

    # ------------------------------------------------------------ listings

    def _selection(self, repository: Any) -> list[str | list[str] | None]:
        """What to read of each registry: None (catalog), a name, or names."""
        if isinstance(repository, dict):
            return [repository.get(r.registry_host, repository.get(r.registry_url, []))
                    for r in self.registries]
        return [repository] * len(self.registries)

    def _repositories(self, pool: Any, repository: Any, progress: ProgressCallback | None,
                      cancel: threading.Event | None) -> list[list[str]]:
        futures = [self._submit(pool, "catalog", tasks.repository_names, target, chosen)
                   if chosen != [] else None
                   for target, chosen in zip(self._targets, self._selection(repository),
                                             strict=True)]
        found = self._gather([f for f in futures if f is not None], "catalog", progress, cancel)
        it = iter(found)
        return [next(it) if f is not None else [] for f in futures]

    def images_frame(self, repository: Any = None, *, platform: str | None = None,
                     progress: ProgressCallback | None = None,
                     cancel: threading.Event | None = None) -> pd.DataFrame:
        """Every tag of the fleet: the facade's ``registry_images_frame`` rows, concatenated.

        ``repository``: None (each registry's catalog), a name or names (in every
        registry), or ``{registry_url: names}``. With a client, one task per repository.
        """
        import pandas as pd

        with self._pool() as pool:
            names = self._repositories(pool, repository, progress, cancel)
            futures = [self._submit(pool, "list", tasks.images_rows, target, [name], platform)
                       for target, repos in zip(self._targets, names, strict=True)
                       for name in repos]
            frames = self._gather(futures, "list", progress, cancel)
        if not frames:
            return self.registries[0].registry_images_frame([], limit=None)
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------ layers

    def _layer_pass(self, pool: Any, names: list[list[str]], platform: str | None,
                    progress: ProgressCallback | None, cancel: threading.Event | None
                    ) -> tuple[list[tasks.TagPlan], dict[str, tasks.ImageSummary]]:
        """Plan every tag, read each unique layer once, stack each unique image once."""
        plan_futures = [self._submit(pool, "plan", tasks.plan_repository, target, name, platform)
                        for target, repos in zip(self._targets, names, strict=True)
                        for name in repos]
        plans = [p for batch in self._gather(plan_futures, "plan", progress, cancel)
                 for p in batch]
        target_of = {r.registry_host: t for r, t in zip(self.registries, self._targets,
                                                         strict=True)}
        reads: dict[str, Any] = {}
        images: dict[str, list[str]] = {}
        for plan in plans:
            if plan.image_digest is None:
                continue
            images.setdefault(plan.image_digest, [d for d, _, _ in plan.layers])
            for layer in plan.layers:
                if layer[0] not in reads:
                    reads[layer[0]] = self._submit(
                        pool, f"layer-{layer[0].split(':')[-1][:12]}", tasks.read_layer_once,
                        target_of[plan.host], plan.repository, layer, self.cache)
        summary_futures = {digest: self._submit(pool, "image", tasks.summarize_image, layers,
                                                [reads[d] for d in layers])
                           for digest, layers in images.items()}
        summaries = self._gather(list(summary_futures.values()), "layers", progress, cancel)
        self.futures = []
        read = {d for s in summaries for d in s.read_layers}
        self.stats = FleetStats(
            tags=sum(1 for p in plans if p.tag is not None), images=len(images),
            layer_references=sum(len(p.layers) for p in plans), unique_layers=len(reads),
            layers_read=len(read), cache_hits=len(reads) - len(read))
        return plans, dict(zip(summary_futures, summaries, strict=True))

    def audit(self, repository: Any = None, *, platform: str | None = None,
              rules_off: Sequence[str] = (), now: datetime | None = None,
              progress: ProgressCallback | None = None,
              cancel: threading.Event | None = None) -> pd.DataFrame:
        """The facade's audit of every registry, plus what the layers hold.

        Columns: the facade's audit columns, then :data:`FLEET_AUDIT_COLUMNS` (sizes,
        wasted space and package counts of each tag's stacked layers, as the facade's
        ``wasted_space`` and ``packages_frame`` give them). ``now`` fixes "today".
        """
        import pandas as pd

        now = now or datetime.now(timezone.utc)
        with self._pool() as pool:
            names = self._repositories(pool, repository, progress, cancel)
            audit_futures = [self._submit(pool, "audit", tasks.audit_registry, target, repos,
                                          platform, tuple(rules_off), now)
                             for target, repos in zip(self._targets, names, strict=True)]
            plans, summaries = self._layer_pass(pool, names, platform, progress, cancel)
            frames = self._gather(audit_futures, "audit", progress, cancel)
        frame = pd.concat(frames, ignore_index=True)
        by_tag = {(p.host, display_name(p.host, p.repository), p.tag): p for p in plans}
        rows = []
        for host, repo, tag in zip(frame["registry_url"], frame["repository"], frame["tag"],
                                   strict=True):
            plan = by_tag.get((host, repo, tag))
            summary = summaries.get(plan.image_digest) if plan and plan.image_digest else None
            rows.append({} if summary is None else {
                "image_digest": plan.image_digest,  # type: ignore[union-attr]
                "uncompressed_size_bytes": summary.uncompressed_size_bytes,
                "file_count": summary.file_count, "file_bytes": summary.total_bytes,
                "wasted_bytes": summary.wasted_bytes, "efficiency": summary.efficiency,
                "package_count": None if summary.error else len(summary.packages),
                "layer_error": summary.error})
        extra = build_frame(rows, FLEET_AUDIT_COLUMNS)
        return pd.concat([frame, extra], axis=1)

    def packages_frame(self, repository: Any = None, *, platform: str | None = None,
                       progress: ProgressCallback | None = None,
                       cancel: threading.Event | None = None) -> pd.DataFrame:
        """Installed packages of every tag (one row per package per tag), with where from."""
        with self._pool() as pool:
            names = self._repositories(pool, repository, progress, cancel)
            plans, summaries = self._layer_pass(pool, names, platform, progress, cancel)
        rows = []
        for plan in plans:
            summary = summaries.get(plan.image_digest) if plan.image_digest else None
            for package in summary.packages if summary else ():
                rows.append({"registry_url": plan.host,
                             "repository": display_name(plan.host, plan.repository),
                             "tag": plan.tag, "image_digest": plan.image_digest, **package})
        return build_frame(rows, FLEET_PACKAGE_COLUMNS)

    # ------------------------------------------------------------ storage

    def to_parquet(self, directory: str | Path, repository: Any = None, *,
                   platform: str | None = None, progress: ProgressCallback | None = None,
                   cancel: threading.Event | None = None) -> dict[str, str]:
        """Write ``images``, ``audit`` and ``packages`` under ``directory`` as Parquet
        datasets partitioned by ``registry_url`` (pyarrow). Returns their paths.

        Dict columns (``labels``) are written as JSON text. Read one back with
        :meth:`dask_frame` (a dask DataFrame) or ``pandas.read_parquet``.
        """
        from .parquet import write_partitioned

        frames = {
            "images": self.images_frame(repository, platform=platform, progress=progress,
                                        cancel=cancel),
            "audit": self.audit(repository, platform=platform, progress=progress,
                                cancel=cancel),
            "packages": self.packages_frame(repository, platform=platform, progress=progress,
                                            cancel=cancel),
        }
        return {name: write_partitioned(frame, Path(directory) / name)
                for name, frame in frames.items()}

    @staticmethod
    def dask_frame(directory: str | Path, frame: str = "audit") -> Any:
        """One dataset written by :meth:`to_parquet` as a dask DataFrame (lazy)."""
        import dask.dataframe as dd

        return dd.read_parquet(str(Path(directory) / frame))


class _NoPool:
    """The context manager a Dask fleet uses where a local one opens a thread pool."""

    def __enter__(self) -> _NoPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def _call_resolved(func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run ``func`` with local futures among ``args`` (or in lists) replaced by results."""
    def value(arg: Any) -> Any:
        if isinstance(arg, concurrent.futures.Future):
            return arg.result()
        if isinstance(arg, list):
            return [value(a) for a in arg]
        return arg

    return func(*(value(a) for a in args))
