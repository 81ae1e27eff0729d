"""registry_nb.frames: fixed columns and dtypes, UTC times, sizes in MB."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from registry_nb.frames import (
    LAYER_COLUMNS,
    LOCAL_IMAGE_COLUMNS,
    REGISTRY_IMAGE_COLUMNS,
    build_frame,
    size_mb,
    to_utc,
)

ALL_SCHEMAS = [LOCAL_IMAGE_COLUMNS, REGISTRY_IMAGE_COLUMNS, LAYER_COLUMNS]


def dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def test_documented_columns() -> None:
    assert list(LOCAL_IMAGE_COLUMNS) == [
        "repository", "tag", "image_id", "size_bytes", "size_mb", "created", "labels",
        "architecture", "os"]
    assert list(REGISTRY_IMAGE_COLUMNS) == [
        "repository", "tag", "digest", "media_type", "size_bytes", "size_mb", "layer_count",
        "created", "architecture", "os", "labels", "platforms", "registry_url", "error"]
    assert list(LAYER_COLUMNS) == [
        "index", "digest", "media_type", "size_bytes", "size_mb", "created_by", "created"]
    for schema in ALL_SCHEMAS:
        assert schema["size_mb"] == "float64"
        assert schema["created"] == "datetime64[ns, UTC]"
        assert all(name == name.lower() and " " not in name for name in schema)


@pytest.mark.parametrize("schema", ALL_SCHEMAS)
def test_empty_frames_keep_columns_and_dtypes(schema: dict[str, str]) -> None:
    frame = build_frame([], schema)
    assert frame.empty and list(frame.columns) == list(schema)
    assert dtypes(frame) == schema


def test_rows_fill_missing_keys_with_nulls_and_drop_unknown_ones() -> None:
    rows = [
        {"repository": "demo", "tag": "1", "digest": "sha256:" + "a" * 64, "size_bytes": 2_500_000,
         "size_mb": 2.5, "layer_count": 3, "created": "2024-05-01T12:00:00+02:00",
         "labels": {"a": "b"}, "platforms": ["linux/amd64", "linux/arm64/v8"],
         "unknown": "dropped"},
        {"repository": "demo", "tag": "broken", "error": "BlobNotFoundError: gone"},
    ]
    frame = build_frame(rows, REGISTRY_IMAGE_COLUMNS)
    assert dtypes(frame) == REGISTRY_IMAGE_COLUMNS
    assert "unknown" not in frame.columns
    assert frame.loc[0, "created"] == pd.Timestamp("2024-05-01T10:00:00Z")
    assert frame.loc[0, "labels"] == {"a": "b"}
    assert frame.loc[0, "platforms"] == ["linux/amd64", "linux/arm64/v8"]
    assert frame.loc[0, "size_bytes"] == 2_500_000
    assert pd.isna(frame.loc[1, "size_bytes"]) and pd.isna(frame.loc[1, "created"])
    assert pd.isna(frame.loc[1, "digest"]) and frame.loc[1, "error"].startswith("BlobNotFound")
    assert pd.isna(frame.loc[0, "error"])


def test_extra_columns() -> None:
    frame = build_frame([{"index": 0, "digest": "d", "size_bytes": 1, "note": "x"}],
                        LAYER_COLUMNS, extra={"note": "string"})
    assert list(frame.columns) == [*LAYER_COLUMNS, "note"]
    assert frame.loc[0, "note"] == "x"


@pytest.mark.parametrize(("value", "expected"), [
    (1_700_000_000, "2023-11-14T22:13:20Z"),
    (1_700_000_000.5, "2023-11-14T22:13:20.5Z"),
    ("2023-11-14T22:13:20Z", "2023-11-14T22:13:20Z"),
    ("2023-11-14T23:13:20+01:00", "2023-11-14T22:13:20Z"),
    ("2023-11-14T22:13:20.123456789Z", "2023-11-14T22:13:20.123456789Z"),
    ("2023-11-14T22:13:20", "2023-11-14T22:13:20Z"),  # naive text is taken as UTC
    (datetime(2023, 11, 14, 23, 13, 20, tzinfo=timezone(timedelta(hours=1))),
     "2023-11-14T22:13:20Z"),
    (np.datetime64("2023-11-14T22:13:20"), "2023-11-14T22:13:20Z"),
])
def test_to_utc(value: object, expected: str) -> None:
    stamp = to_utc(value)
    assert stamp == pd.Timestamp(expected)
    assert str(stamp.tz) == "UTC"


@pytest.mark.parametrize("value", [
    None, "", "not a time", float("nan"), pd.NaT, True,
    "0001-01-01T00:00:00Z",  # Go's zero time: outside datetime64[ns]
    datetime(1, 1, 1, tzinfo=timezone.utc), "9999-12-31T00:00:00Z", 1e20,
])
def test_to_utc_nulls(value: object) -> None:
    assert to_utc(value) is None


def test_out_of_range_times_do_not_sink_a_frame() -> None:
    frame = build_frame([{"index": 0, "digest": "d", "size_bytes": 1,
                          "created": "0001-01-01T00:00:00Z"},
                         {"index": 1, "digest": "e", "size_bytes": 2, "created": 0}],
                        LAYER_COLUMNS)
    assert dtypes(frame) == LAYER_COLUMNS
    assert pd.isna(frame.loc[0, "created"])
    assert frame.loc[1, "created"] == pd.Timestamp("1970-01-01T00:00:00Z")


def test_size_mb() -> None:
    assert size_mb(None) is None
    assert size_mb(0) == 0.0
    assert size_mb(1_234_567) == 1.235
    assert size_mb(999) == 0.001
