"""Typed, size-capped reading of the JSON documents of images (manifests, configs).

Every failure is an :class:`~registry_nb.errors.InvalidManifestError` that names the
offending field; :func:`encode_json` writes the one stable encoding the builders use.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidManifestError, InvalidReferenceError
from .mediatypes import is_media_type
from .reference import parse_digest

__all__ = ["Fields", "json_type", "load_json", "encode_json", "MAX_SIZE"]

MAX_SIZE = 2**63 - 1  # sizes are int64 in Go
# An absolute URI (RFC 3986 section 4.3): a scheme, then no spaces or control characters.
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]+")


class Fields:
    """Typed getters on a JSON object that raise InvalidManifestError naming the field."""

    def __init__(self, data: Any, where: str, kind: str) -> None:
        self.kind = kind
        self.where = where
        if not isinstance(data, dict):
            raise self.error(where, f"must be a JSON object, not {json_type(data)}")
        self.data: dict[str, Any] = data

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, path: str, reason: str) -> InvalidManifestError:
        name = f"field {path!r}" if path else "the document"
        return InvalidManifestError(
            f"invalid {self.kind}: {name} {reason}",
            hint="The tool that pushed this image wrote a malformed document; re-push it.",
        )

    def child(self, key: str, data: Any) -> Fields:
        return Fields(data, self.path(key), self.kind)

    def raw(self, key: str, required: bool) -> Any:
        value = self.data.get(key)
        if value is None and required:
            raise self.error(self.path(key), "is missing")
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key, required)
        if value is not None and not isinstance(value, str):
            raise self.error(self.path(key), f"must be a string, not {json_type(value)}")
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(self.path(key), f"must be an integer, not {json_type(value)}")
        if value < minimum or value > MAX_SIZE:
            raise self.error(self.path(key), f"must be between {minimum} and 2**63-1")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key, False)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.error(self.path(key), f"must be true or false, not {json_type(value)}")
        return value

    def digest(self, key: str, *, required: bool = True) -> str | None:
        value = self.string(key, required=required)
        if value is None:
            return None
        try:
            parse_digest(value)
        except InvalidReferenceError as exc:
            raise self.error(self.path(key), f"is not a valid digest: {exc.reason}") from None
        return value

    def media_type(self, key: str, *, required: bool = False) -> str | None:
        """A ``type/subtype`` media type (RFC 6838); required ones must not be empty."""
        value = self.string(key, required=required)
        if value is None or (value == "" and not required):
            return value or None
        if not is_media_type(value):
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise self.error(self.path(key), f"{shown!r} is not a media type: it must be "
                             "type/subtype, each a letter or digit then at most 126 letters, "
                             "digits or !#$&^_.+- (RFC 6838)")
        return value

    def uris(self, key: str) -> list[str]:
        """A list of absolute URIs (RFC 3986), as descriptor ``urls`` must be."""
        values = self.strings(key) or []
        for i, value in enumerate(values):
            if not _URI_RE.fullmatch(value):
                raise self.error(f"{self.path(key)}[{i}]",
                                 f"{value[:80]!r} is not an absolute URI (scheme:...)")
        return values

    def base64(self, key: str) -> bytes | None:
        """Standard base64 with padding (RFC 4648 section 4), decoded."""
        value = self.string(key)
        if value is None:
            return None
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise self.error(self.path(key), "is not padded base64 (RFC 4648)") from None

    def array(self, key: str, *, required: bool = False) -> list[Any] | None:
        value = self.raw(key, required)
        if value is not None and not isinstance(value, list):
            raise self.error(self.path(key), f"must be an array, not {json_type(value)}")
        return value

    def strings(self, key: str, *, allow_string: bool = False) -> list[str] | None:
        value = self.raw(key, False)
        if value is None:
            return None
        if allow_string and isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(self.path(key), "must be an array of strings")
        return list(value)

    def string_map(self, key: str) -> dict[str, str]:
        value = self.raw(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self.error(self.path(key), "must be an object of string values")
        return dict(value)

    def key_set(self, key: str) -> list[str]:
        """Keys of an object used as a set (``{"80/tcp": {}}``)."""
        value = self.raw(key, False)
        if value is None:
            return []
        if not isinstance(value, dict):
            raise self.error(self.path(key), f"must be an object, not {json_type(value)}")
        return list(value)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: Any, kind: str, limit: int) -> dict[str, Any]:
    """Decode a size-capped UTF-8 JSON object; every failure is InvalidManifestError."""
    if isinstance(raw, (bytearray, memoryview)):
        raw = bytes(raw)
    if not isinstance(raw, bytes):
        raise InvalidManifestError(f"invalid {kind}: expected bytes, got {type(raw).__name__}")
    if len(raw) > limit:
        raise InvalidManifestError(
            f"invalid {kind}: {len(raw)} bytes is over the {limit}-byte limit",
            hint="Registries and docker reject documents this large; this one is not an image.",
        )
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):
            raise ValueError("starts with a byte order mark")
        data = json.loads(
            text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant
        )
    except RecursionError:
        raise InvalidManifestError(f"invalid {kind}: JSON nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidManifestError(f"invalid {kind}: not valid UTF-8 JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidManifestError(
            f"invalid {kind}: the document must be a JSON object, not {json_type(data)}"
        )
    return data


def encode_json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
