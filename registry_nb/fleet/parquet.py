"""Fleet frames as Parquet datasets partitioned by registry (pyarrow)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["write_partitioned", "PARTITION_COLUMN"]

#: The column a fleet dataset is partitioned by (one folder per registry).
PARTITION_COLUMN = "registry_url"


def _parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Dict values (labels) as JSON text: Parquet has no type for free-form mappings."""
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype == object and out[name].map(lambda v: isinstance(v, dict)).any():
            out[name] = out[name].map(
                lambda v: json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
            ).astype("string")
    return out


def write_partitioned(frame: pd.DataFrame, path: str | Path) -> str:
    """Write ``frame`` as a Parquet dataset under ``path`` (replaced), one folder per
    registry (``registry_url=…``). Returns the dataset's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    table: Any = pa.Table.from_pandas(_parquet_safe(frame), preserve_index=False)
    if len(frame):
        pq.write_to_dataset(table, str(path), partition_cols=[PARTITION_COLUMN])
    else:
        pq.write_table(table, str(path / "empty.parquet"))
    return str(path)
