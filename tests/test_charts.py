"""registry_nb.charts: figures from audit frames, drawn headless (no pyplot state)."""

from __future__ import annotations

import io

import matplotlib
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from registry_nb import charts
from registry_nb.frames import AUDIT_COLUMNS, LAYER_COLUMNS, STORAGE_COLUMNS, build_frame

MB = 1_000_000


def bars(fig: Figure) -> list[Rectangle]:
    """The visible bars of the figure's first axes (legend proxies have no size)."""
    ax = fig.axes[0]
    return [p for p in ax.patches if isinstance(p, Rectangle)
            and (p.get_width() > 0 and p.get_height() > 0)]


def renders(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    data = out.getvalue()
    assert data.startswith(b"\x89PNG")
    return data


def texts(fig: Figure) -> str:
    ax = fig.axes[0]
    return " ".join([t.get_text() for t in ax.texts] + [ax.get_title()])


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before  # charts never register figures with pyplot


def test_size_by_repository_from_storage_frame() -> None:
    frame = pd.DataFrame([
        {"repository": "small", "image_bytes": 2 * MB, "stored_bytes": 1 * MB, "is_total": False},
        {"repository": "big", "image_bytes": 9 * MB, "stored_bytes": 4 * MB, "is_total": False},
        {"repository": "(total)", "image_bytes": 11 * MB, "stored_bytes": 5 * MB,
         "is_total": True},
    ])
    fig = charts.size_by_repository(frame)
    assert isinstance(fig, Figure)
    widths = sorted(round(b.get_width(), 3) for b in bars(fig))
    assert widths == [1.0, 2.0, 4.0, 9.0]  # the total row is left out
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["small", "big"]  # largest at the top
    renders(fig)


def test_size_by_repository_from_an_audit_counts_shared_digests_once() -> None:
    frame = pd.DataFrame([
        {"repository": "a", "tag": "1", "digest": "sha256:1", "size_bytes": 3 * MB},
        {"repository": "a", "tag": "latest", "digest": "sha256:1", "size_bytes": 3 * MB},
        {"repository": "b", "tag": "1", "digest": "sha256:2", "size_bytes": 1 * MB},
        {"repository": "c", "tag": "x", "error": "broken"},
    ]).astype({"size_bytes": "Int64"})
    fig = charts.size_by_repository(frame, top=5)
    assert sorted(round(b.get_width(), 3) for b in bars(fig)) == [1.0, 1.0, 3.0, 6.0]
    renders(fig)


def test_layer_sizes() -> None:
    frame = build_frame([
        {"index": 0, "size_bytes": 2 * MB, "created_by": "COPY busybox /bin/busybox"},
        {"index": 1, "size_bytes": MB // 2, "created_by": "RUN " + "x" * 200},
    ], LAYER_COLUMNS)
    fig = charts.layer_sizes(frame, title="demo:1")
    assert [round(b.get_height(), 3) for b in bars(fig)] == [2.0, 0.5]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[0].startswith("0: COPY busybox") and len(ticks[1]) < 40
    assert fig.axes[0].get_title() == "demo:1"
    scan = pd.DataFrame({"index": [0, 1], "size_bytes": [MB, MB],
                         "uncompressed_size_bytes": [3 * MB, 2 * MB],
                         "wasted_bytes": [MB, 0]})
    assert len(bars(charts.layer_sizes(scan))) == 5  # 2 + 2 + one non-zero wasted bar
    renders(fig)


def test_age_histogram() -> None:
    frame = pd.DataFrame({"age_days": [1, 2, 3, 400, 800, None]})
    fig = charts.age_histogram(frame, bins=4)
    assert sum(b.get_height() for b in bars(fig)) == 5
    assert any("stale" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    created = pd.DataFrame({"created": pd.to_datetime(["2020-01-01", "2021-01-01"], utc=True)})
    assert sum(b.get_height() for b in bars(charts.age_histogram(created))) == 2
    renders(fig)


def test_findings_by_rule() -> None:
    frame = pd.DataFrame({"findings": [["secret-env", "runs-as-root"],
                                       ["runs-as-root", "duplicate-tag"], ["runs-as-root"],
                                       []]})
    fig = charts.findings_by_rule(frame)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["duplicate-tag", "runs-as-root", "secret-env"]  # worst at the top
    assert [b.get_width() for b in bars(fig)] == [1, 3, 1]
    colours = [matplotlib.colors.to_hex(b.get_facecolor()) for b in bars(fig)]
    assert colours == [charts.SEVERITY_COLORS[s] for s in ("info", "medium", "high")]
    renders(fig)


@pytest.mark.parametrize("draw", [
    lambda: charts.size_by_repository(build_frame([], AUDIT_COLUMNS)),
    lambda: charts.size_by_repository(build_frame([], STORAGE_COLUMNS)),
    lambda: charts.layer_sizes(build_frame([], LAYER_COLUMNS)),
    lambda: charts.age_histogram(build_frame([], AUDIT_COLUMNS)),
    lambda: charts.findings_by_rule(build_frame([], AUDIT_COLUMNS)),
])
def test_empty_frames_draw_a_note(draw) -> None:
    fig = draw()
    assert isinstance(fig, Figure) and bars(fig) == []
    assert "no " in texts(fig)
    renders(fig)
