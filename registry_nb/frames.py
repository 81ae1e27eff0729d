"""pandas DataFrames with fixed columns and dtypes.

Every frame the facade returns is built here from plain row dicts, so an empty
result keeps its columns and dtypes and every frame follows the same rules:
snake_case names, ``size_bytes`` as integers, ``size_mb`` as floats (bytes / 10**6,
as docker prints MB), times as timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import pandas as pd

__all__ = [
    "LOCAL_IMAGE_COLUMNS",
    "REGISTRY_IMAGE_COLUMNS",
    "LAYER_COLUMNS",
    "build_frame",
    "to_utc",
    "size_mb",
]

_TIME = "datetime64[ns, UTC]"

#: One row per local tag (``ContainerRegistry.local_images_frame``).
LOCAL_IMAGE_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "image_id": "string",
    "size_bytes": "int64",
    "size_mb": "float64",
    "created": _TIME,
    "labels": "object",
    "architecture": "string",
    "os": "string",
}

#: One row per registry tag (``ContainerRegistry.registry_images_frame``).
#: ``size_bytes`` and ``layer_count`` are nullable (``Int64``): a tag whose
#: details could not be read keeps its row, with ``error`` saying why.
REGISTRY_IMAGE_COLUMNS: dict[str, str] = {
    "repository": "string",
    "tag": "string",
    "digest": "string",
    "media_type": "string",
    "size_bytes": "Int64",
    "size_mb": "float64",
    "layer_count": "Int64",
    "created": _TIME,
    "architecture": "string",
    "os": "string",
    "labels": "object",
    "platforms": "object",
    "registry_url": "string",
    "error": "string",
}

#: One row per layer, in order (``ContainerRegistry.layers_frame``).
LAYER_COLUMNS: dict[str, str] = {
    "index": "int64",
    "digest": "string",
    "media_type": "string",
    "size_bytes": "int64",
    "size_mb": "float64",
    "created_by": "string",
    "created": _TIME,
}


def size_mb(size_bytes: int | None) -> float | None:
    """Bytes to megabytes (10**6 bytes, as docker prints sizes), rounded to 3 places."""
    if size_bytes is None:
        return None
    return round(size_bytes / 1_000_000, 3)


def to_utc(value: Any) -> pd.Timestamp | None:
    """A datetime, ISO-8601 text or epoch seconds as a tz-aware UTC timestamp.

    None for nulls, unparsable values and times a ``datetime64[ns]`` column cannot
    hold (before 1677 or after 2262, such as Go's zero time ``0001-01-01`` that
    some image builders write).
    """
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        if isinstance(value, (int, float)):
            stamp = pd.Timestamp(datetime.fromtimestamp(value, tz=timezone.utc))
        else:
            stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            return None
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.as_unit("ns")
    except (ValueError, TypeError, OverflowError, OSError):  # OutOfBoundsDatetime is a ValueError
        return None


def build_frame(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str],
                extra: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Build a DataFrame with exactly ``columns`` (plus ``extra``) in their dtypes.

    Missing keys become nulls; unknown keys are dropped. Time columns are
    converted with :func:`to_utc`.
    """
    schema = dict(columns)
    if extra:
        schema.update(extra)
    rows = list(rows)
    data: dict[str, pd.Series] = {}
    for name, dtype in schema.items():
        values = [row.get(name) for row in rows]
        if dtype == _TIME:
            series = pd.Series([to_utc(v) for v in values], dtype=_TIME)
        elif dtype == "object":
            series = pd.Series(values, dtype="object")
        else:
            series = pd.Series(values, dtype=dtype)
        data[name] = series
    return pd.DataFrame(data, columns=list(schema))
