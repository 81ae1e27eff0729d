"""matplotlib charts of audit results; each function returns a :class:`ChartFigure`.

Figures are made with :class:`matplotlib.figure.Figure` directly, never through
``pyplot``: no global state, no GUI backend needed (safe under Agg, in threads and
in tests), and nothing opens a window. A plain ``Figure`` made this way shows in
a notebook only as ``<Figure size … with 1 Axes>`` (IPython draws figures only
once ``%matplotlib inline`` or pyplot has registered its formatter), so the
charts return a ``Figure`` subclass that draws itself: :meth:`ChartFigure._repr_png_`.
In a notebook the returned figure shows as the cell's value (or through
``display``); elsewhere ``fig.savefig("chart.png")``. Byte axes choose B, kB, MB
or GB by the largest value (:func:`byte_unit`).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

__all__ = ["size_by_repository", "layer_sizes", "age_histogram", "findings_by_rule",
           "SEVERITY_COLORS", "ChartFigure", "byte_unit", "bytes_axis", "human_bytes",
           "counted"]

#: Bar colours by audit severity.
SEVERITY_COLORS = {"high": "#c0392b", "medium": "#e67e22", "low": "#f1c40f",
                   "info": "#7f8c8d", None: "#95a5a6"}
#: Decimal byte units (as docker and the frames' ``size_mb`` count), smallest first.
BYTE_UNITS = ((1, "B"), (1_000, "kB"), (1_000_000, "MB"), (1_000_000_000, "GB"))


class ChartFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that shows as a picture in Jupyter.

    IPython asks an object for ``_repr_png_``; this one renders itself with Agg (no
    pyplot, no backend switch), so a chart draws as a cell's value or through
    ``display()`` in JupyterLab, a console or nbval, with or without
    ``%matplotlib``. Everything else is a plain ``Figure``.
    """

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


def byte_unit(largest: float) -> tuple[int, str]:
    """``(bytes per unit, unit)`` for values up to ``largest``: 237 -> ``(1, "B")``,
    45_000 -> ``(1000, "kB")``, 3_151_757 -> ``(10**6, "MB")``."""
    chosen = BYTE_UNITS[0]
    for scale, unit in BYTE_UNITS:
        if abs(largest) >= scale:
            chosen = (scale, unit)
    return chosen


def human_bytes(n: float | None) -> str:
    """``1234567`` -> ``"1.23 MB"``, ``237`` -> ``"237 B"`` (decimal units, as the
    frames' ``size_mb``); ``None`` -> ``"?"``."""
    if n is None:
        return "?"
    scale, unit = byte_unit(float(n))
    return f"{int(n)} B" if scale == 1 else f"{float(n) / scale:.2f} {unit}"


def bytes_axis(ax: Axes, axis: str, largest: float, what: str) -> tuple[int, str]:
    """Label the ``"x"`` or ``"y"`` axis of ``ax`` as ``what`` in the unit that suits
    ``largest`` bytes, with plain tick numbers (no ``1e6`` offset, no ``0.00016``).
    Returns ``(bytes per unit, unit)``: plot ``values / scale``."""
    scale, unit = byte_unit(largest)
    label = f"{what} ({unit})" if scale == 1 else f"{what} ({unit}, {scale:,} bytes)"
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.4g}"))
    target.set_label_text(label)
    return scale, unit


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = ChartFigure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _empty(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def counted(n: int, noun: str) -> str:
    """``"1 file"``, ``"3 files"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _short(text: Any, limit: int = 40) -> str:
    value = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[:limit - 1] + "…"


def size_by_repository(frame: pd.DataFrame, *, top: int = 15,
                       title: str = "Size by repository") -> ChartFigure:
    """Horizontal bars per repository, largest first (at most ``top``).

    From :meth:`~registry_nb.registry.ContainerRegistry.storage_frame`: the sum of
    image sizes next to the bytes really stored (what deduplication saves is the
    gap). From a registry listing or an audit: the sum of tag sizes next to the
    size of distinct images (tags sharing a digest counted once).
    """
    height = 1.5 + 0.35 * min(top, max(len(frame), 1))
    fig, ax = _figure(8, height)
    if "stored_bytes" in frame.columns:
        data = frame[~frame["is_total"].astype(bool)] if "is_total" in frame.columns else frame
        table = pd.DataFrame({
            "repository": data["repository"].astype(str),
            "all tags": data["image_bytes"].astype(float),
            "stored": data["stored_bytes"].astype(float),
        })
        labels = ("sum of image sizes", "stored once (deduplicated)")
    else:
        data = frame.dropna(subset=["size_bytes"]) if "size_bytes" in frame.columns else frame
        if data.empty:
            _empty(ax, title, "no image sizes to plot")
            return fig
        sizes = data.assign(size=data["size_bytes"].astype(float))
        distinct = sizes.drop_duplicates(subset=["repository", "digest"]) \
            if "digest" in sizes.columns else sizes
        table = pd.DataFrame({
            "all tags": sizes.groupby("repository")["size"].sum(),
            "stored": distinct.groupby("repository")["size"].sum(),
        }).reset_index()
        table["repository"] = table["repository"].astype(str)
        labels = ("sum over tags", "distinct images")
    if table.empty:
        _empty(ax, title, "no repositories to plot")
        return fig
    table = table.sort_values("all tags", ascending=False).head(top).iloc[::-1]
    scale, _ = bytes_axis(ax, "x", float(table[["all tags", "stored"]].max().max()),
                          "compressed size")
    table[["all tags", "stored"]] /= scale
    positions = range(len(table))
    ax.barh([p + 0.2 for p in positions], table["all tags"], height=0.4, label=labels[0],
            color="#5dade2")
    ax.barh([p - 0.2 for p in positions], table["stored"], height=0.4, label=labels[1],
            color="#1f618d")
    for y, (total, stored) in enumerate(zip(table["all tags"], table["stored"], strict=True)):
        ax.text(max(total, stored), y, f" {human_bytes(total * scale)} / "
                f"{human_bytes(stored * scale)}", va="center", fontsize=7, color="0.25")
    ax.set_yticks(list(positions), [_short(r, 45) for r in table["repository"]])
    ax.margins(x=0.18)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig


def layer_sizes(frame: pd.DataFrame, *, title: str = "Layer sizes") -> ChartFigure:
    """One bar per layer, bottom layer first: compressed size, and when the frame has
    them, uncompressed size and the bytes later layers waste.

    Takes :meth:`~registry_nb.registry.ContainerRegistry.layers_frame` (labels from
    ``created_by``) or ``wasted_space(...).layers``.
    """
    fig, ax = _figure(9, 4.5)
    if frame.empty:
        _empty(ax, title, "no layers")
        return fig
    index = frame["index"].astype(int).tolist() if "index" in frame.columns \
        else list(range(len(frame)))
    def numbers(column: str) -> pd.Series:
        return pd.to_numeric(frame[column], errors="coerce").fillna(0).astype(float)

    series = [("compressed", numbers("size_bytes"), "#1f618d")]
    for column, label, color in (("uncompressed_size_bytes", "uncompressed", "#5dade2"),
                                 ("wasted_bytes", "wasted later", "#c0392b")):
        if column in frame.columns and frame[column].notna().any():
            series.append((label, numbers(column), color))
    scale, _ = bytes_axis(ax, "y", max(values.max() for _, values, _ in series), "size")
    width = 0.8 / len(series)
    for i, (label, values, color) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar([x + offset for x in range(len(index))], values / scale,
               width=width, label=label, color=color)
    if "created_by" in frame.columns:
        ticks = [f"{i}: {_short(c, 28)}" for i, c in zip(index, frame["created_by"], strict=True)]
        ax.set_xticks(range(len(index)), ticks, rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xticks(range(len(index)), [str(i) for i in index])
        ax.set_xlabel("layer")
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    return fig


def age_histogram(frame: pd.DataFrame, *, bins: int = 20, stale_after: float | None = 365,
                  title: str = "Image age") -> ChartFigure:
    """Histogram of image ages in days (``age_days``, else computed from ``created``)."""
    fig, ax = _figure(8, 4)
    if "age_days" in frame.columns:
        ages = pd.to_numeric(frame["age_days"], errors="coerce").dropna()
    elif "created" in frame.columns:
        created = pd.to_datetime(frame["created"], utc=True, errors="coerce").dropna()
        ages = (pd.Timestamp.now(tz="UTC") - created).dt.total_seconds() / 86400
    else:
        ages = pd.Series([], dtype=float)
    if ages.empty:
        _empty(ax, title, "no creation times to plot")
        return fig
    # bins over the whole axis (0 to the oldest, or the stale line): ages that are all
    # alike (images built together) get one visible bar, not a hairline at 1051 days
    oldest = max(float(ages.max()), float(stale_after or 0))
    edges = [oldest * 1.02 * i / bins for i in range(bins + 1)] if oldest > 0 else bins
    ax.hist(ages, bins=edges, color="#1f618d", edgecolor="white")
    if stale_after is not None:
        ax.axvline(stale_after, color="#c0392b", linestyle="--",
                   label=f"stale after {stale_after:g} days")
        ax.legend()
    ax.set_xlabel("age (days since the image was built)")
    ax.set_ylabel("tags")
    ax.set_title(title)
    return fig


def findings_by_rule(frame: pd.DataFrame, *, rules: pd.DataFrame | None = None,
                     title: str = "Findings by rule") -> ChartFigure:
    """How many tags each rule flags, coloured by severity (``audit()`` output)."""
    counts: Counter[str] = Counter()
    for findings in frame.get("findings", pd.Series([], dtype=object)):
        if isinstance(findings, Iterable) and not isinstance(findings, str):
            counts.update(findings)
    severity: dict[str, str] = {}
    if rules is None:
        from .audits.rules import audit_rules  # charts sit beside the facade; imported on use

        rules = audit_rules()
    severity = dict(zip(rules["id"].astype(str), rules["severity"].astype(str), strict=True))
    fig, ax = _figure(8, 1.5 + 0.35 * max(len(counts), 1))
    if not counts:
        _empty(ax, title, "no findings")
        return fig
    order = ("high", "medium", "low", "info")
    items = sorted(counts.items(),
                   key=lambda kv: (order.index(severity[kv[0]]) if severity.get(kv[0]) in order
                                   else len(order), -kv[1], kv[0]))[::-1]
    ax.barh([k for k, _ in items], [v for _, v in items],
            color=[SEVERITY_COLORS.get(severity.get(k)) for k, _ in items])
    for y, (_, value) in enumerate(items):
        ax.text(value, y, f" {value}", va="center", fontsize=8)
    handles = [Patch(color=SEVERITY_COLORS[s], label=s) for s in order
               if s in {severity.get(k) for k in counts}]
    ax.legend(handles=handles, title="severity", loc="lower right")
    ax.set_xlabel("tags flagged")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def diff_chart(diff: Any, *, title: str | None = None) -> ChartFigure:
    """Bytes of two images side by side: the shared base and each side's own layers,
    with the file and package changes in the title (``diff`` from ``diff_images``)."""
    s = diff.summary
    fig, ax = _figure(7, 2.4)
    scale, _ = bytes_axis(ax, "x", max(s["size_bytes_a"], s["size_bytes_b"], 1),
                          "compressed size")
    shared = s["shared_bytes"] / scale
    names = [_short(s["a"], 30), _short(s["b"], 30)]
    own = [(s["size_bytes_a"] - s["shared_bytes"]) / scale,
           (s["size_bytes_b"] - s["shared_bytes"]) / scale]
    ax.barh(names, [shared, shared], color="#95a5a6", label="shared layers")
    ax.barh(names[:1], own[:1], left=[shared], color="#c0392b", label="A's own layers")
    ax.barh(names[1:], own[1:], left=[shared], color="#27ae60", label="B's own layers")
    ax.invert_yaxis()
    # beside the bars, never over them
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(title or f"{counted(s['files_added'], 'file')} added, {s['files_removed']} "
                 f"removed, {s['files_changed']} changed; "
                 f"{counted(s['packages_changed'], 'package')} changed")
    return fig
