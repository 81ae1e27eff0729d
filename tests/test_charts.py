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


# -- pictures in notebooks and human units --------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def displayed(obj) -> dict:
    """What IPython puts in a notebook for ``obj`` as a cell's value or through
    ``display()``: a fresh formatter, no ``%matplotlib``, no pyplot."""
    from IPython.core.formatters import DisplayFormatter

    data, _metadata = DisplayFormatter().format(obj)
    return data


def png_width(data: bytes) -> int:
    assert data.startswith(PNG)
    return int.from_bytes(data[16:20], "big")  # IHDR width


def _layers(*sizes: int) -> pd.DataFrame:
    return build_frame([{"index": i, "size_bytes": s, "created_by": f"COPY part{i} /srv/"}
                        for i, s in enumerate(sizes)], LAYER_COLUMNS)


_AUDIT = pd.DataFrame([
    {"repository": "a", "tag": "1", "digest": "sha256:1", "size_bytes": 3 * MB,
     "findings": ["runs-as-root"], "age_days": 3.0},
    {"repository": "b", "tag": "1", "digest": "sha256:2", "size_bytes": MB,
     "findings": [], "age_days": 400.0},
])


@pytest.mark.parametrize("draw", [
    lambda: charts.size_by_repository(_AUDIT),
    lambda: charts.layer_sizes(_layers(2 * MB, MB)),
    lambda: charts.age_histogram(_AUDIT),
    lambda: charts.findings_by_rule(_AUDIT),
    lambda: charts.findings_by_rule(_AUDIT.iloc[:0]),  # the "no findings" note too
], ids=["size_by_repository", "layer_sizes", "age_histogram", "findings_by_rule", "empty"])
def test_charts_display_as_pictures_without_pyplot(draw) -> None:
    fig = draw()
    assert isinstance(fig, Figure)  # still a Figure: savefig, axes, etc.
    data = displayed(fig)
    assert png_width(data["image/png"]) >= 600
    assert data["text/plain"].startswith("<")  # the repr is only the text fallback


def test_widget_layer_chart_displays_as_a_picture() -> None:
    from registry_nb.widgets import layer_chart

    data = displayed(layer_chart(_layers(237, 170), title="demo/hello:2"))
    assert png_width(data["image/png"]) >= 600


@pytest.mark.parametrize("largest, unit", [
    (237, "B"), (45_000, "kB"), (3_151_757, "MB"), (2_500_000_000, "GB")])
def test_layer_charts_use_human_units(largest: int, unit: str) -> None:
    from registry_nb.widgets import layer_chart

    frame = _layers(largest, largest // 3)
    for fig, axis in ((charts.layer_sizes(frame), "y"), (layer_chart(frame), "x")):
        renders(fig)  # tick labels are set when the figure is drawn
        ax = fig.axes[0]
        label = ax.get_ylabel() if axis == "y" else ax.get_xlabel()
        assert f"({unit}" in label, label
        labels = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
        ticks = [t.get_text() for t in labels if t.get_text()]
        values = [float(t.replace(",", "")) for t in ticks]
        assert max(values) >= 1, ticks  # never 0.00016 (MB) for a 160-byte layer
        assert all(len(t) <= 5 for t in ticks), ticks
        # the bars are in the axis unit: the largest one reads as its size in that unit
        heights = [b.get_height() if axis == "y" else b.get_width() for b in bars(fig)]
        scale = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
        assert max(heights) == pytest.approx(largest / scale)


def test_size_by_repository_uses_human_units() -> None:
    small = pd.DataFrame([{"repository": "tiny", "tag": "1", "digest": "sha256:1",
                           "size_bytes": 773}])
    fig = charts.size_by_repository(small)
    renders(fig)
    assert "(B" in fig.axes[0].get_xlabel()
    assert "773 B / 773 B" in texts(fig)


def test_age_histogram_of_alike_ages_shows_a_visible_bar() -> None:
    fig = charts.age_histogram(pd.DataFrame({"age_days": [1051.4] * 9}))
    renders(fig)
    drawn = bars(fig)
    assert sum(b.get_height() for b in drawn) == 9
    left, right = fig.axes[0].get_xlim()
    assert max(b.get_width() for b in drawn) > (right - left) / 40  # a bar, not a hairline
