"""Retention: which tags of a repository to keep, why, and deleting only what a plan says.

:func:`retention_rows` reads every tag (digest, creation time, index children) and
decides per tag, in this order: tags matching a ``keep_tags`` pattern are kept; of the
rest, the ``keep_last`` newest images (distinct digests, by creation time) are kept and
the others, or those older than ``older_than_days`` (both rules: a tag goes only when
both say so), are deleted; a tag whose digest a kept tag shares, or a kept index
lists, is kept; a referrers fallback or cosign tag (``sha256-<hex>[.sig|.att|.sbom]``)
goes with its subject. :func:`apply_retention_rows` deletes the plan's digests only,
after checking each one's tags again just before its DELETE.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import RegistryError, RegistryUnavailableError
from ..oci.artifacts import parse_digest_tag
from .delete import Mapper, RepositoryState, delete_digest, repository_state
from .listing import RegistryImages

__all__ = ["retention_rows", "apply_retention_rows", "RETENTION_FIELDS"]

RETENTION_FIELDS = ("repository", "tag", "digest", "created", "action", "reason")


def _created(images: RegistryImages, repository: str, digest: str
             ) -> tuple[datetime | None, str]:
    try:
        created = images.resolve(repository, digest).config.created
    except RegistryError as exc:
        return None, f"{type(exc).__name__}: {exc.message}"
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return created, ""


def _day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def retention_rows(images: RegistryImages, repository: str, *, keep_last: int | None = None,
                   older_than_days: float | None = None,
                   keep_tags: Iterable[str] = (), now: datetime | None = None
                   ) -> list[dict[str, Any]]:
    """One row per tag: ``repository, tag, digest, created, action, reason`` (plain dicts)."""
    if keep_last is not None and keep_last < 0:
        raise ValueError(f"keep_last must be >= 0 or None, not {keep_last}")
    patterns = [re.compile(p) for p in keep_tags]
    now = now or datetime.now(timezone.utc)
    cutoff = now - timedelta(days=older_than_days) if older_than_days is not None else None
    state = repository_state(images.client, repository, mapper=images.map)
    rows: dict[str, dict[str, Any]] = {}
    for tag, error in state.errors.items():
        rows[tag] = {"tag": tag, "digest": None, "created": None, "action": "keep",
                     "reason": f"could not be read, so no rule decides ({error})"}
    ordinary = [t for t in sorted(state.tags) if parse_digest_tag(t) is None]
    # read each image once, by the digest its tags were seen naming
    digests = sorted({state.tags[t] for t in ordinary})
    by_digest = dict(zip(digests, images.map(
        lambda d: _created(images, repository, d), digests), strict=True))
    created = {t: by_digest[state.tags[t]] for t in ordinary}
    for tag in ordinary:
        rows[tag] = {"tag": tag, "digest": state.tags[tag], "created": created[tag][0]}
    # newest images first: rank distinct digests by their creation time
    dated = sorted({(created[t][0], state.tags[t]) for t in ordinary if created[t][0]},
                   key=lambda pair: pair[0], reverse=True)
    rank = {digest: i + 1 for i, (_, digest) in enumerate(dict.fromkeys(dated))}
    for tag in ordinary:
        row = rows[tag]
        when, error = created[tag]
        matched = next((p.pattern for p in patterns if p.search(tag)), None)
        if matched is not None:
            row.update(action="keep", reason=f"matches the keep pattern {matched!r}")
        elif when is None:
            row.update(action="keep", reason="its creation time is unknown"
                       + (f" ({error})" if error else "") + ", so no rule decides")
        else:
            _decide(row, rank[row["digest"]], when, keep_last, cutoff, older_than_days)
    _keep_what_kept_tags_need(rows, state)
    for tag in sorted(state.tags):
        if tag not in rows:
            rows[tag] = _with_subject(tag, state, rows)
    return [{"repository": repository, **rows[t]} for t in sorted(rows)]


def _decide(row: dict[str, Any], rank: int, when: datetime, keep_last: int | None,
            cutoff: datetime | None, days: float | None) -> None:
    newest = keep_last is not None and rank <= keep_last
    old = cutoff is not None and when < cutoff
    if keep_last is None and cutoff is None:
        row.update(action="keep", reason="no rule says delete (give keep_last or "
                   "older_than_days)")
    elif newest:
        row.update(action="keep", reason=f"one of the {keep_last} newest images "
                   f"(number {rank}, created {_day(when)})")
    elif cutoff is not None and not old:
        row.update(action="keep", reason=f"created {_day(when)}, within {days:g} days")
    else:
        parts = []
        if keep_last is not None:
            parts.append(f"not among the {keep_last} newest images (number {rank})")
        if old:
            parts.append(f"created {_day(when)}, more than {days:g} days ago")
        row.update(action="delete", reason=" and ".join(parts))


def _keep_what_kept_tags_need(rows: dict[str, dict[str, Any]], state: RepositoryState) -> None:
    """Keep a deleted tag whose digest a kept tag shares or a kept index lists."""
    kept = {r["digest"]: r["tag"] for r in rows.values() if r["action"] == "keep" and r["digest"]}
    needed: dict[str, str] = {}
    for digest, tag in kept.items():
        for child in state.children.get(digest, ()):
            needed.setdefault(child, f"a platform manifest of the kept index tag {tag!r}")
    for digest, tag in kept.items():
        needed.setdefault(digest, f"its digest is also the kept tag {tag!r}")
    for row in rows.values():
        if row["action"] == "delete" and row["digest"] in needed:
            row.update(action="keep", reason=needed[row["digest"]])


def _with_subject(tag: str, state: RepositoryState, rows: dict[str, dict[str, Any]]
                  ) -> dict[str, Any]:
    """A fallback or cosign tag follows its subject's action."""
    digest_tag = parse_digest_tag(tag)
    assert digest_tag is not None
    row: dict[str, Any] = {"tag": tag, "digest": state.tags[tag], "created": None}
    subject = [r for r in rows.values() if r["digest"] and digest_tag.names(r["digest"])]
    listed = any(digest_tag.names(kid) for kids in state.children.values() for kid in kids)
    kind = "referrers fallback" if digest_tag.kind == "fallback" else f"cosign .{digest_tag.kind}"
    if subject and all(r["action"] == "delete" for r in subject) and not listed:
        row.update(action="delete", reason=f"the {kind} tag of {subject[0]['tag']!r}, "
                   "which is deleted")
    elif subject or listed:
        name = f"{subject[0]['tag']!r}" if subject else "a platform manifest of an index"
        row.update(action="keep", reason=f"the {kind} tag of {name}, which is kept")
    else:
        row.update(action="keep", reason=f"a {kind} tag whose subject no tag here names; "
                   "kept (check it by hand)")
    return row


# ------------------------------------------------------------------ apply

def _outcome(row: Mapping[str, Any], status: str, error: str | None = None) -> dict[str, Any]:
    return {**{k: row.get(k) for k in RETENTION_FIELDS}, "status": status, "error": error}


def apply_retention_rows(images: RegistryImages, rows: list[Mapping[str, Any]], *,
                         dry_run: bool = True) -> list[dict[str, Any]]:
    """Delete the digests of the plan's ``delete`` rows; one outcome per row, in order.

    ``status``: ``kept``, ``would-delete`` (dry run), ``deleted``, ``skipped`` (with the
    reason in ``error``: the tags changed since the plan, an index still lists it, an
    earlier failure) or ``failed`` (the registry's error). Nothing outside the plan is
    deleted: a digest is deleted only when the tags naming it right before its DELETE
    are exactly the plan's delete rows for it.
    """
    outcomes: dict[int, dict[str, Any]] = {}
    by_repository: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.get("action") == "delete" and row.get("digest"):
            by_repository.setdefault(str(row["repository"]), []).append(i)
        else:
            outcomes[i] = _outcome(row, "kept")
    for repository, indexes in by_repository.items():
        planned: dict[str, set[str]] = {}
        for i in indexes:
            planned.setdefault(str(rows[i]["digest"]), set()).add(str(rows[i]["tag"]))
        kept_digests = {r.get("digest") for r in rows if r.get("repository") == repository
                        and r.get("action") != "delete"}
        results = _apply_repository(images, repository, planned, kept_digests, dry_run)
        for i in indexes:
            status, error = results[str(rows[i]["digest"])]
            outcomes[i] = _outcome(rows[i], status, error)
    return [outcomes[i] for i in range(len(rows))]


def _changed(digest: str, planned: set[str], now: set[str]) -> str | None:
    if now == planned:
        return None
    parts = []
    if planned - now:
        parts.append(f"no longer tagged {', '.join(sorted(planned - now))}")
    if now - planned:
        parts.append(f"now also tagged {', '.join(sorted(now - planned))}")
    return f"{digest} changed since the plan: " + "; ".join(parts)


def _apply_repository(images: RegistryImages, repository: str, planned: dict[str, set[str]],
                      kept_digests: set[Any], dry_run: bool
                      ) -> dict[str, tuple[str, str | None]]:
    client = images.client
    mapper: Mapper = images.map
    results: dict[str, tuple[str, str | None]] = {}
    try:
        state = repository_state(client, repository, mapper=mapper)
    except RegistryError as exc:
        return {d: ("skipped", f"the repository could not be read: {exc}") for d in planned}
    # indexes first, so that the manifests they list are free to go after them
    order = sorted(planned, key=lambda d: (d not in state.children, d))
    unreachable: str | None = None
    for digest in order:
        if unreachable is not None:
            results[digest] = ("skipped", f"not tried: {unreachable}")
            continue
        reason = _changed(digest, planned[digest], set(state.tags_of(digest)))
        if reason is None and digest in kept_digests:
            reason = f"{digest} is also on a row the plan keeps"
        if reason is None and state.errors:
            reason = (f"tags could not be read ({', '.join(sorted(state.errors))}), so the "
                      "check that no other tag names this digest is incomplete")
        parents = state.indexes_listing(digest)
        if reason is None and parents:
            reason = f"still listed by the index {state.describe_indexes(parents)}"
        if reason is not None:
            results[digest] = ("skipped", reason)
            continue
        if dry_run:
            results[digest] = ("would-delete", None)
            continue
        try:
            reason = _recheck(client, repository, digest, planned[digest], state)
            if reason is not None:
                results[digest] = ("skipped", reason)
                continue
            delete_digest(client, repository, digest)
            state.forget(digest)
            results[digest] = ("deleted", None)
        except RegistryUnavailableError as exc:
            unreachable = f"the registry became unreachable ({exc.message})"
            results[digest] = ("failed", f"{type(exc).__name__}: {exc}")
        except RegistryError as exc:
            results[digest] = ("failed", f"{type(exc).__name__}: {exc}")
    return results


def _recheck(client: Any, repository: str, digest: str, planned: set[str],
             state: RepositoryState) -> str | None:
    """Right before the DELETE: list the tags again and HEAD the planned ones and any new."""
    current = set(client.tags(repository))
    to_head = sorted(planned | (current - set(state.tags)))
    now_on_digest = set()
    for tag in to_head:
        head = client.head_manifest(repository, tag) if tag in current else None
        if head is not None and head.digest == digest:
            now_on_digest.add(tag)
    return _changed(digest, planned, now_on_digest)


# ------------------------------------------------------------------ command line
