"""The forms' and the browser's layer chart: compressed size per layer, by instruction.

Figures are :class:`~registry_nb.charts.ChartFigure` (no ``pyplot``, no GUI
backend), so they are safe on worker threads and under Agg and draw themselves
when shown in a notebook; :func:`figure_png` renders one to PNG bytes for
``Output.append_display_data``.
"""

from __future__ import annotations

import io
import re

import pandas as pd
from matplotlib.figure import Figure

from ..charts import ChartFigure, bytes_axis
from ._common import human_bytes

__all__ = ["instruction", "layer_chart", "figure_png"]

_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")
_SHELL = re.compile(r"^(?:\|\d+(?:\s+\S+=\S*)*\s+)?/bin/sh -c\s+")
_HASHED = re.compile(r"\b(file|dir|multi):([0-9a-f]{12})[0-9a-f]{52}\b")
_BUILDKIT = re.compile(r"\s*#\s*buildkit\s*$")


def instruction(created_by: object, limit: int = 60) -> str:
    """The Dockerfile instruction behind a history ``created_by``, shortened for a label.

    ``/bin/sh -c #(nop) COPY file:<64 hex> in /x`` -> ``COPY file:<12 hex> in /x``;
    ``|1 X=1 /bin/sh -c make`` -> ``RUN make``; BuildKit's ``# buildkit`` suffix is
    dropped. Other text is kept as it is.
    """
    if created_by is None or (isinstance(created_by, float) and pd.isna(created_by)):
        return "(no history)"
    text = " ".join(str(created_by).split())
    text = _BUILDKIT.sub("", text)
    if _NOP.match(text):
        text = _NOP.sub("", text)
    elif _SHELL.match(text):
        text = "RUN " + _SHELL.sub("", text)
    text = _HASHED.sub(r"\1:\2", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _literal(text: str) -> str:
    """Text matplotlib shows as is: a ``$`` would start mathtext (``echo $A $B``)."""
    return text.replace("$", r"\$")


def layer_chart(frame: pd.DataFrame, title: str = "Layers") -> ChartFigure:
    """Horizontal bars, one per layer from the bottom layer down, labelled with the
    instruction that made it and its compressed size.

    ``frame`` is :meth:`~registry_nb.registry.ContainerRegistry.layers_frame`
    (``index``, ``size_bytes``, ``created_by``).
    """
    count = len(frame)
    fig = ChartFigure(figsize=(8, 1.6 + 0.38 * max(count, 1)), layout="constrained", dpi=90)
    ax = fig.add_subplot()
    total = int(pd.to_numeric(frame.get("size_bytes"), errors="coerce").fillna(0).sum()) \
        if count else 0
    ax.set_title(f"{_literal(title)}\n{count} layer{'s' if count != 1 else ''}, "
                 f"{human_bytes(total)} compressed", fontsize=10)
    if not count:
        ax.text(0.5, 0.5, "no layers", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    sizes = pd.to_numeric(frame["size_bytes"], errors="coerce").fillna(0).astype(float)
    index = frame["index"].astype(int).tolist() if "index" in frame.columns \
        else list(range(count))
    created_by = frame["created_by"] if "created_by" in frame.columns else [None] * count
    labels = [_literal(f"{i}  {instruction(c)}") for i, c in zip(index, created_by, strict=True)]
    positions = list(range(count))
    scale, _ = bytes_axis(ax, "x", float(sizes.max()), "compressed size")
    ax.barh(positions, sizes / scale, color="#2e86c1", height=0.6)
    for y, size in zip(positions, sizes, strict=True):
        ax.text(size / scale, y, f" {human_bytes(size)}", va="center", fontsize=8, color="0.2")
    ax.set_yticks(positions, labels, fontsize=8)
    ax.invert_yaxis()  # bottom layer first, read top to bottom like the Dockerfile
    ax.margins(x=0.2)
    ax.xaxis.label.set_fontsize(8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (Agg; no global state touched)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
