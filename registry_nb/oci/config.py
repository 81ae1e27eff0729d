"""Image configs: how containers run, the history of layers, RFC 3339 timestamps."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import InvalidReferenceError
from .jsonfields import Fields, encode_json, json_type, load_json
from .manifest import Descriptor, Manifest
from .mediatypes import MAX_CONFIG_BYTES, OCI_CONFIG
from .platform import Platform
from .reference import parse_digest, sha256_digest

__all__ = ["ContainerConfig", "HistoryEntry", "ImageConfig", "layer_history",
           "parse_timestamp", "format_timestamp", "Timestamp"]

# ------------------------------------------------------------------ timestamps

_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?"
)


class Timestamp(datetime):
    """An aware UTC datetime that keeps the nanoseconds of an RFC 3339 time.

    ``nanosecond`` (0-999) is what lies below the microsecond, as in
    ``pandas.Timestamp``; :func:`format_timestamp` writes it back.
    """

    __slots__ = ("nanosecond",)
    nanosecond: int

    def __new__(cls, *args: Any, nanosecond: int = 0, **kwargs: Any) -> Timestamp:
        self = super().__new__(cls, *args, **kwargs)
        self.nanosecond = nanosecond
        return self

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_timestamp, (self.replace(tzinfo=None).isoformat(), self.nanosecond))

    def __repr__(self) -> str:
        return f"Timestamp({format_timestamp(self)!r})"


def _timestamp(text: str, nanosecond: int) -> Timestamp:
    plain = datetime.fromisoformat(text)
    return Timestamp(plain.year, plain.month, plain.day, plain.hour, plain.minute,
                     plain.second, plain.microsecond, tzinfo=timezone.utc,
                     nanosecond=nanosecond)


def parse_timestamp(text: str) -> Timestamp | None:
    """Parse an RFC 3339 time (nanoseconds and ``Z`` allowed) into an aware UTC time.

    The result is a :class:`Timestamp` (a ``datetime``) that keeps the nanoseconds. A
    missing offset means UTC; Go's zero time (year 1) gives ``None``. Raises
    ``ValueError`` for anything else.
    """
    match = _TIMESTAMP_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year <= 1:
        return None
    digits = (match.group(7) or "")[:9].ljust(9, "0")
    second = min(second, 59)  # leap second
    stamp = datetime(year, month, day, hour, minute, second, int(digits[:6]),
                     tzinfo=timezone.utc)
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if offset >= timedelta(hours=24):
            raise ValueError(f"{text!r} has an invalid UTC offset")
        stamp -= offset if match.group(9) == "+" else -offset
    return _timestamp(stamp.replace(tzinfo=None).isoformat(), int(digits[6:]))


def format_timestamp(stamp: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as Go's ``RFC3339Nano``: up to 9 fraction digits.

    Nanoseconds come from ``stamp.nanosecond`` (a :class:`Timestamp` or a
    ``pandas.Timestamp``); trailing zeros are dropped. A naive time means UTC.
    """
    nanosecond = int(getattr(stamp, "nanosecond", 0) or 0)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    stamp = stamp.astimezone(timezone.utc)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = stamp.microsecond * 1000 + nanosecond
    if fraction:
        text += f".{fraction:09d}".rstrip("0")
    return text + "Z"


# ------------------------------------------------------------------ image config


@dataclass(frozen=True, kw_only=True)
class ContainerConfig:
    """The ``config`` section of an image config: how containers of the image run."""

    user: str | None = None
    env: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    working_dir: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None

    @property
    def env_dict(self) -> dict[str, str]:
        """``env`` as a dict (``KEY=value``; a bare ``KEY`` maps to ``""``)."""
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out

    @classmethod
    def _from_fields(cls, f: Fields) -> ContainerConfig:
        return cls(
            user=f.string("User") or None,
            env=f.strings("Env") or [],
            entrypoint=f.strings("Entrypoint", allow_string=True),
            cmd=f.strings("Cmd", allow_string=True),
            working_dir=f.string("WorkingDir") or None,
            labels=f.string_map("Labels"),
            exposed_ports=f.key_set("ExposedPorts"),
            volumes=f.key_set("Volumes"),
            stop_signal=f.string("StopSignal") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with Docker's capitalised keys; empty fields omitted."""
        out: dict[str, Any] = {}
        if self.user:
            out["User"] = self.user
        if self.exposed_ports:
            out["ExposedPorts"] = {port: {} for port in self.exposed_ports}
        if self.env:
            out["Env"] = list(self.env)
        if self.entrypoint is not None:
            out["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            out["Cmd"] = list(self.cmd)
        if self.volumes:
            out["Volumes"] = {volume: {} for volume in self.volumes}
        if self.working_dir:
            out["WorkingDir"] = self.working_dir
        if self.labels:
            out["Labels"] = dict(self.labels)
        if self.stop_signal:
            out["StopSignal"] = self.stop_signal
        return out


@dataclass(frozen=True, kw_only=True)
class HistoryEntry:
    """One line of an image's build history."""

    created: datetime | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; empty fields omitted."""
        out: dict[str, Any] = {}
        if self.created is not None:
            out["created"] = format_timestamp(self.created)
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


def _timestamp_field(f: Fields, key: str) -> datetime | None:
    text = f.string(key)
    if text is None or text == "":
        return None
    try:
        return parse_timestamp(text)
    except (ValueError, OverflowError) as exc:
        raise f.error(f.path(key), f"is not an RFC 3339 time ({exc})") from None


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """An image config blob (OCI or Docker); ``raw`` holds the exact bytes."""

    architecture: str
    os: str
    variant: str | None = None
    os_version: str | None = None
    created: datetime | None = None
    author: str | None = None
    config: ContainerConfig = field(default_factory=ContainerConfig)
    history: list[HistoryEntry] = field(default_factory=list)
    diff_ids: list[str] = field(default_factory=list)
    raw: bytes = field(repr=False)

    @property
    def digest(self) -> str:
        """``sha256:`` digest of :attr:`raw` (the config descriptor's digest)."""
        return sha256_digest(self.raw)

    @property
    def platform(self) -> Platform:
        """The platform this image is built for."""
        return Platform(self.os, self.architecture, self.variant, self.os_version)

    def descriptor(self, media_type: str = OCI_CONFIG) -> Descriptor:
        """A descriptor of this config blob."""
        return Descriptor(media_type, self.digest, len(self.raw))

    @classmethod
    def from_bytes(cls, raw: bytes) -> ImageConfig:
        """Parse a config blob; malformed input raises InvalidManifestError naming the field."""
        data = load_json(raw, "image config", MAX_CONFIG_BYTES)
        f = Fields(data, "", "image config")
        run = f.raw("config", False)
        rootfs = f.raw("rootfs", False)
        diff_ids: list[str] = []
        if rootfs is not None:
            r = f.child("rootfs", rootfs)
            for i in range(len(r.array("diff_ids") or [])):
                diff_ids.append(_digest_item(r, "diff_ids", i))
        history = []
        for i, item in enumerate(f.array("history") or []):
            h = f.child(f"history[{i}]", item)
            history.append(HistoryEntry(
                created=_timestamp_field(h, "created"),
                created_by=h.string("created_by"),
                author=h.string("author"),
                comment=h.string("comment"),
                empty_layer=h.boolean("empty_layer"),
            ))
        return cls(
            architecture=f.string("architecture", required=True) or "",
            os=f.string("os", required=True) or "",
            variant=f.string("variant") or None,
            os_version=f.string("os.version") or None,
            created=_timestamp_field(f, "created"),
            author=f.string("author") or None,
            config=ContainerConfig._from_fields(f.child("config", run))
            if run is not None else ContainerConfig(),
            history=history,
            diff_ids=diff_ids,
            raw=bytes(raw),
        )

    @classmethod
    def build(
        cls,
        *,
        diff_ids: Iterable[str] = (),
        architecture: str = "amd64",
        os: str = "linux",
        variant: str | None = None,
        created: datetime | None = None,
        author: str | None = None,
        config: ContainerConfig | None = None,
        history: Iterable[HistoryEntry] | None = None,
    ) -> ImageConfig:
        """Encode a config blob in the module's canonical JSON and parse it back."""
        doc: dict[str, Any] = {}
        if created is not None:
            doc["created"] = format_timestamp(created)
        if author:
            doc["author"] = author
        doc["architecture"] = architecture
        doc["os"] = os
        if variant:
            doc["variant"] = variant
        run = (config or ContainerConfig()).to_dict()
        if run:
            doc["config"] = run
        doc["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
        if history is not None:
            doc["history"] = [entry.to_dict() for entry in history]
        return cls.from_bytes(encode_json(doc))


def _digest_item(f: Fields, key: str, index: int) -> str:
    value = f.data[key][index]
    path = f"{f.path(key)}[{index}]"
    if not isinstance(value, str):
        raise f.error(path, f"must be a string, not {json_type(value)}")
    try:
        parse_digest(value)
    except InvalidReferenceError as exc:
        raise f.error(path, f"is not a valid digest: {exc.reason}") from None
    return value


def layer_history(config: ImageConfig, manifest: Manifest) -> list[HistoryEntry | None]:
    """The history entry that made each layer of ``manifest``, in layer order.

    Entries with ``empty_layer`` are skipped; when the remaining count differs from
    the number of layers the pairing is unknowable and every item is ``None``.
    """
    made = [entry for entry in config.history if not entry.empty_layer]
    if len(made) != len(manifest.layers):
        return [None] * len(manifest.layers)
    return list(made)
